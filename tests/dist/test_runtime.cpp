// The runtime around the collectives: async Work (reverse-order waits, progress without a wait,
// two groups in flight), argument errors raised before anything is sent, split, and the Mesh
// (coordinates, sub-group membership for every layout of the world, dims validation).
#include <chrono>
#include <thread>

#include "loom/dist/mesh.h"
#include "loom/ops/shape.h"
#include "tests/dist/dist_test.h"

namespace loom::dist::test {
namespace {

double sum_of_ranks(int size) { return double(size) * (size - 1) / 2; }

TEST(Async, WaitInReverseOrder) {
  Group& g = *world();
  Tensor x = make(DType::f32, g.rank(), 1000);
  Tensor in = make(DType::i64, g.rank(), 7);
  Tensor out = Tensor::empty({7 * g.size()}, DType::i64);
  auto a = g.all_reduce(x, ReduceOp::sum);
  auto b = g.all_gather(in, out);
  b->wait();
  a->wait();
  EXPECT_TRUE(a->done());
  std::vector<double> ex, eo;
  for (int64_t i = 0; i < 1000; ++i) ex.push_back(reduce_serial(ReduceOp::sum, g.size(), [&](int r) { return value(DType::f32, r, i); }));
  for (int r = 0; r < g.size(); ++r)
    for (int64_t i = 0; i < 7; ++i) eo.push_back(value(DType::i64, r, i));
  expect_values(x, ex);
  expect_values(out, eo);
}

// The communication thread finishes the op while the caller does other work and never waits.
TEST(Async, CompletesWithoutWait) {
  Group& g = *world();
  Tensor x = Tensor::ones({1 << 16});
  auto w = g.all_reduce(x, ReduceOp::sum);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!w->done() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(w->done());
  w->wait();
  EXPECT_EQ(x.to_vector()[12345], double(g.size()));
}

// Ops of two groups run on their own threads: both are in flight before either is waited for.
TEST(Async, TwoGroupsInFlight) {
  Group& g = *world();
  auto half = g.split(g.rank() % 2, g.rank(), "parity");
  EXPECT_EQ(half->name(), "parity");
  EXPECT_EQ(half->timeout_s(), g.timeout_s());
  Tensor a = Tensor::from_ints({g.rank()}, {1}), b = Tensor::from_ints({g.rank()}, {1});
  auto wa = half->all_reduce(a, ReduceOp::sum);
  auto wb = g.all_reduce(b, ReduceOp::sum);
  wb->wait();
  wa->wait();
  int64_t expect_half = 0;
  for (int r = g.rank() % 2; r < g.size(); r += 2) expect_half += r;
  EXPECT_EQ(a.to_ints()[0], expect_half);
  EXPECT_EQ(b.to_ints()[0], int64_t(sum_of_ranks(g.size())));
}

template <typename F> void expect_error(F&& f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing: " << part;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(Errors, BadArgumentsThrowBeforeSending) {
  Group& g = *world();
  int n = g.size();
  Tensor f = Tensor::zeros({4 * n}), i32 = Tensor::zeros({4}, DType::i32), out3 = Tensor::zeros({3});
  expect_error([&] { g.reduce_scatter(f, out3, ReduceOp::sum); }, "in has");
  expect_error([&] { g.all_reduce(i32, ReduceOp::avg); }, "avg needs a floating dtype, got i32");
  expect_error([&] { g.all_gather(out3, f); }, "out has");
  Tensor four = Tensor::zeros({4});
  expect_error([&] { g.all_gatherv(four, f, std::vector<int64_t>(size_t(n), 3)); }, "sum to");
  expect_error([&] { g.all_gatherv(four, f, std::vector<int64_t>(size_t(n) + 1, 4)); }, "counts for a group of");
  expect_error([&] { g.broadcast(four, n); }, "root");
  expect_error([&] { g.send(four, n, 0); }, "peer");
  expect_error([&] { g.send(four, 0, -1); }, "tag");
  Tensor i32_out = Tensor::zeros({4 * n}, DType::i32);
  expect_error([&] { g.all_gather(four, i32_out); }, "in is f32 but out is i32");
  Tensor odd = Tensor::zeros({4 * n + 1}), odd_out = Tensor::zeros({4 * n + 1});
  if (n > 1) expect_error([&] { g.all_to_all(odd, odd_out); }, "a multiple of");
  Tensor t = ops::transpose(Tensor::zeros({2, 3}), 0, 1);
  expect_error([&] { g.all_reduce(t, ReduceOp::sum); }, "must be contiguous");
  expect_error([&] { g.set_timeout_s(0); }, "timeout must be positive");
}

TEST(Mesh, CoordinatesTpFastestThenCpDpPp) {
  ParallelDims d{.dp = 2, .tp = 2, .pp = 2, .cp = 2};
  EXPECT_EQ(Mesh::coords_of(d, 1), (MeshCoords{.dp = 0, .tp = 1, .pp = 0, .cp = 0}));
  EXPECT_EQ(Mesh::coords_of(d, 2), (MeshCoords{.dp = 0, .tp = 0, .pp = 0, .cp = 1}));
  EXPECT_EQ(Mesh::coords_of(d, 4), (MeshCoords{.dp = 1, .tp = 0, .pp = 0, .cp = 0}));
  EXPECT_EQ(Mesh::coords_of(d, 8), (MeshCoords{.dp = 0, .tp = 0, .pp = 1, .cp = 0}));
  EXPECT_EQ(Mesh::coords_of(d, 13), (MeshCoords{.dp = 1, .tp = 1, .pp = 1, .cp = 0}));
  for (int r = 0; r < 16; ++r) EXPECT_EQ(Mesh::rank_of(d, Mesh::coords_of(d, r)), r);
}

// Every (dp, tp, pp, cp) whose product is the world size.
std::vector<ParallelDims> layouts(int world_size) {
  std::vector<ParallelDims> out;
  for (int dp = 1; dp <= world_size; ++dp)
    for (int tp = 1; tp <= world_size; ++tp)
      for (int pp = 1; pp <= world_size; ++pp)
        for (int cp = 1; cp <= world_size; ++cp)
          if (dp * tp * pp * cp == world_size) out.push_back({dp, tp, pp, cp});
  return out;
}

// Each sub-group has the right size and rank, and holds exactly the world ranks that differ
// along its dimension only: an all_reduce of world ranks in it sums to those ranks.
TEST(Mesh, SubGroupsOfEveryLayout) {
  Group& g = *world();
  for (const ParallelDims& d : layouts(g.size())) {
    SCOPED_TRACE(fmt::format("dp={} tp={} pp={} cp={}", d.dp, d.tp, d.pp, d.cp));
    Mesh mesh(world(), d);
    MeshCoords c = Mesh::coords_of(d, g.rank());
    EXPECT_EQ(mesh.coords(), c);
    struct Dim {
      const std::shared_ptr<Group>& group;
      int MeshCoords::*coord;
      int extent;
      const char* name;
    };
    for (const Dim& dim : {Dim{mesh.tp(), &MeshCoords::tp, d.tp, "tp"}, Dim{mesh.cp(), &MeshCoords::cp, d.cp, "cp"},
                           Dim{mesh.dp(), &MeshCoords::dp, d.dp, "dp"}, Dim{mesh.pp(), &MeshCoords::pp, d.pp, "pp"}}) {
      EXPECT_EQ(dim.group->name(), dim.name);
      EXPECT_EQ(dim.group->size(), dim.extent) << dim.name;
      EXPECT_EQ(dim.group->rank(), c.*dim.coord) << dim.name;
      Tensor x = Tensor::from_ints({g.rank()}, {1});
      dim.group->all_reduce(x, ReduceOp::sum)->wait();
      int64_t expected = 0;
      for (int k = 0; k < dim.extent; ++k) {
        MeshCoords other = c;
        other.*dim.coord = k;
        expected += Mesh::rank_of(d, other);
      }
      EXPECT_EQ(x.to_ints()[0], expected) << dim.name;
    }
  }
}

TEST(Mesh, DpTpOfFourRanks) {
  Group& g = *world();
  if (g.size() != 4) GTEST_SKIP() << "needs 4 ranks";
  Mesh mesh(world(), ParallelDims{.dp = 2, .tp = 2});
  // Ranks {0,1} and {2,3} share a tp group; {0,2} and {1,3} a dp group.
  EXPECT_EQ(mesh.tp()->rank(), g.rank() % 2);
  EXPECT_EQ(mesh.dp()->rank(), g.rank() / 2);
  Tensor x = Tensor::from_ints({g.rank()}, {1});
  mesh.tp()->all_reduce(x, ReduceOp::sum)->wait();
  EXPECT_EQ(x.to_ints()[0], g.rank() < 2 ? 1 : 5);
  EXPECT_EQ(mesh.pp()->size(), 1);
  EXPECT_EQ(mesh.cp()->size(), 1);
}

TEST(Mesh, DimsMustMatchTheWorldSize) {
  int n = world()->size();
  expect_error([&] { Mesh(world(), ParallelDims{.dp = 2 * n, .tp = 1}); },
               fmt::format("parallel: dp·tp·pp·cp = {}·1·1·1 = {} does not match the world size {}", 2 * n, 2 * n, n));
  expect_error([&] { Mesh(world(), ParallelDims{.dp = n, .tp = 2, .pp = 3}); },
               fmt::format("= {}·2·3·1 = {} does not match the world size {}", n, 6 * n, n));
  expect_error([&] { Mesh(world(), ParallelDims{.dp = n, .tp = 0}); }, "parallel: tp must be at least 1, got 0");
}

}  // namespace
}  // namespace loom::dist::test
