// Every collective against a serial computation, in f32, bf16, f16, i32 and i64, with even and uneven
// sizes (including a rank with nothing), in-place and aliased buffers, at whatever world size
// mpirun gave (1, 2 or 4 ranks; 1 without mpirun).
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "loom/core/tensor.h"
#include "tests/dist/dist_test.h"

namespace loom::dist::test {
namespace {

std::vector<ReduceOp> ops_for(DType t) {
  if (is_floating(t)) return {ReduceOp::sum, ReduceOp::avg, ReduceOp::max};
  return {ReduceOp::sum, ReduceOp::max};
}

std::string label(DType t, ReduceOp op, int64_t n) {
  return fmt::format("{} {} n={}", dtype_name(t), reduce_op_name(op), n);
}

TEST(AllReduce, MatchesSerial) {
  Group& g = *world();
  for (DType t : kDTypes)
    for (ReduceOp op : ops_for(t))
      for (int64_t n : {int64_t(1), int64_t(1001), int64_t(1) << 17}) {
        SCOPED_TRACE(label(t, op, n));
        Tensor x = make(t, g.rank(), n);
        g.all_reduce(x, op)->wait();
        std::vector<double> expected(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i)
          expected[size_t(i)] = reduce_serial(op, g.size(), [&](int r) { return value(t, r, i); });
        expect_values(x, expected);
      }
}

// reduce_scatter(v): rank r's out is the reduction of everyone's chunk r.
void check_reduce_scatter(const std::vector<int64_t>& counts, bool even) {
  Group& g = *world();
  int64_t total = offset_of(counts, g.size()), mine = counts[size_t(g.rank())], first = offset_of(counts, g.rank());
  for (DType t : kDTypes)
    for (ReduceOp op : ops_for(t)) {
      SCOPED_TRACE(label(t, op, total));
      Tensor in = make(t, g.rank(), total);
      Tensor out = Tensor::empty({mine}, t);
      (even ? g.reduce_scatter(in, out, op) : g.reduce_scatterv(in, out, counts, op))->wait();
      std::vector<double> expected(static_cast<size_t>(mine));
      for (int64_t j = 0; j < mine; ++j)
        expected[size_t(j)] = reduce_serial(op, g.size(), [&](int r) { return value(t, r, first + j); });
      expect_values(out, expected);
    }
}

TEST(ReduceScatter, EvenChunks) {
  for (int64_t m : {1, 5, 4096}) check_reduce_scatter(std::vector<int64_t>(size_t(world()->size()), m), true);
}

TEST(ReduceScatter, UnevenCounts) {
  for (int64_t scale : {1, 997}) check_reduce_scatter(uneven_counts(world()->size(), scale), false);
}

// ZeRO reduces a flat gradient buffer into its own shard: out is a view inside in.
TEST(ReduceScatter, OutputIsAViewOfTheInput) {
  Group& g = *world();
  auto counts = uneven_counts(g.size(), 3);
  int64_t total = offset_of(counts, g.size()), first = offset_of(counts, g.rank());
  for (DType t : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(t));
    Tensor in = make(t, g.rank(), total);
    Tensor out = Tensor::from_storage(in.storage(), {counts[size_t(g.rank())]}, t, in.offset() + first);
    g.reduce_scatterv(in, out, counts, ReduceOp::sum)->wait();
    std::vector<double> expected;
    for (int64_t i = 0; i < total; ++i) {
      bool own = i >= first && i < first + counts[size_t(g.rank())];
      expected.push_back(own ? reduce_serial(ReduceOp::sum, g.size(), [&](int r) { return value(t, r, i); })
                             : value(t, g.rank(), i));
    }
    expect_values(in, expected);
  }
}

// all_gather(v): out is every rank's input, in rank order.
void check_all_gather(const std::vector<int64_t>& counts, bool even) {
  Group& g = *world();
  int64_t total = offset_of(counts, g.size());
  for (DType t : kDTypes) {
    SCOPED_TRACE(label(t, ReduceOp::sum, total));
    Tensor in = make(t, g.rank(), counts[size_t(g.rank())], 11);
    Tensor out = Tensor::empty({total}, t);
    (even ? g.all_gather(in, out) : g.all_gatherv(in, out, counts))->wait();
    std::vector<double> expected;
    for (int r = 0; r < g.size(); ++r)
      for (int64_t j = 0; j < counts[size_t(r)]; ++j) expected.push_back(value(t, r, 11 + j));
    expect_values(out, expected);
  }
}

TEST(AllGather, EvenChunks) {
  for (int64_t m : {1, 5, 4096}) check_all_gather(std::vector<int64_t>(size_t(world()->size()), m), true);
}

TEST(AllGather, UnevenCounts) {
  for (int64_t scale : {1, 997}) check_all_gather(uneven_counts(world()->size(), scale), false);
}

// ZeRO gathers updated shards in place: in is this rank's chunk of out.
TEST(AllGather, InPlaceFromOwnChunk) {
  Group& g = *world();
  auto counts = uneven_counts(g.size(), 2);
  int64_t total = offset_of(counts, g.size());
  for (DType t : {DType::f32, DType::bf16, DType::i64}) {
    SCOPED_TRACE(dtype_name(t));
    Tensor out = Tensor::zeros({total}, t);
    Tensor own = make(t, g.rank(), total);  // full length; only this rank's chunk is copied in
    int64_t first = offset_of(counts, g.rank()), mine = counts[size_t(g.rank())];
    auto esize = dtype_size(t);
    std::memcpy(static_cast<char*>(out.raw_data()) + first * esize, static_cast<char*>(own.raw_data()) + first * esize,
                size_t(mine) * esize);
    Tensor in = Tensor::from_storage(out.storage(), {mine}, t, out.offset() + first);
    g.all_gatherv(in, out, counts)->wait();
    std::vector<double> expected;
    for (int r = 0; r < g.size(); ++r)
      for (int64_t j = 0; j < counts[size_t(r)]; ++j) expected.push_back(value(t, r, offset_of(counts, r) + j));
    expect_values(out, expected);
  }
}

TEST(Broadcast, FromFirstAndLastRoot) {
  Group& g = *world();
  for (int root : {0, g.size() - 1})
    for (DType t : kDTypes)
      for (int64_t n : {int64_t(1), int64_t(1000), int64_t(1) << 16}) {
        SCOPED_TRACE(fmt::format("root {} {}", root, label(t, ReduceOp::sum, n)));
        Tensor x = make(t, g.rank(), n);
        g.broadcast(x, root)->wait();
        std::vector<double> expected(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) expected[size_t(i)] = value(t, root, i);
        expect_values(x, expected);
      }
}

TEST(AllToAll, ChunkPGoesToRankP) {
  Group& g = *world();
  for (bool in_place : {false, true})
    for (DType t : kDTypes)
      for (int64_t m : {1, 3, 4097}) {
        SCOPED_TRACE(fmt::format("in_place {} {}", in_place, label(t, ReduceOp::sum, m)));
        Tensor in = make(t, g.rank(), g.size() * m);
        Tensor out = in_place ? in : Tensor::empty({g.size() * m}, t);
        g.all_to_all(in, out)->wait();
        std::vector<double> expected;
        for (int p = 0; p < g.size(); ++p)
          for (int64_t j = 0; j < m; ++j) expected.push_back(value(t, p, g.rank() * m + j));
        expect_values(out, expected);
      }
}

// Sends and recvs in both directions around the ring are all posted before any wait, with
// messages large enough to need a rendezvous: blocking point-to-point would deadlock here.
TEST(SendRecv, RingBothWaysPostedBeforeWaiting) {
  Group& g = *world();
  int next = (g.rank() + 1) % g.size(), prev = (g.rank() + g.size() - 1) % g.size();
  for (DType t : kDTypes)
    for (int64_t n : {int64_t(1), int64_t(1) << 16}) {
      SCOPED_TRACE(label(t, ReduceOp::sum, n));
      Tensor to_next = make(t, g.rank(), n), to_prev = make(t, g.rank(), n, 5);
      Tensor from_prev = Tensor::zeros({n}, t), from_next = Tensor::zeros({n}, t);
      auto s1 = g.send(to_next, next, 1);
      auto s2 = g.send(to_prev, prev, 2);
      auto r1 = g.recv(from_prev, prev, 1);
      auto r2 = g.recv(from_next, next, 2);
      r2->wait();
      r1->wait();
      s2->wait();
      s1->wait();
      std::vector<double> e1, e2;
      for (int64_t i = 0; i < n; ++i) {
        e1.push_back(value(t, prev, i));
        e2.push_back(value(t, next, 5 + i));
      }
      expect_values(from_prev, e1);
      expect_values(from_next, e2);
    }
}

TEST(SendRecv, ShortMessageIsAnError) {
  Group& g = *world();
  int next = (g.rank() + 1) % g.size(), prev = (g.rank() + g.size() - 1) % g.size();
  Tensor small = Tensor::ones({4});
  Tensor big = Tensor::zeros({8});
  auto s = g.send(small, next, 3);
  EXPECT_THROW(g.recv(big, prev, 3)->wait(), Error);
  s->wait();
}

TEST(Barrier, WaitsForTheSlowestRank) {
  Group& g = *world();
  if (g.rank() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto t0 = std::chrono::steady_clock::now();
  g.barrier()->wait();
  double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (g.rank() != 0) {
    EXPECT_GT(waited, 0.2);
  }
}

}  // namespace
}  // namespace loom::dist::test
