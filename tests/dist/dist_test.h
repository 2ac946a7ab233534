// Shared by the dist tests: the world group that main() brought up, and per-rank input data that
// is a pure function of (dtype, rank, index), so each rank computes every expected result alone.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "loom/dist/group.h"

namespace loom::dist::test {

std::shared_ptr<Group>& world();  // defined in main.cpp

inline const std::vector<DType> kDTypes = {DType::f32, DType::bf16, DType::f16, DType::i32, DType::i64};

// Floats get small integers, so bf16 sums and averages over 1, 2 or 4 ranks are exact; i64
// values exceed 2^32, so a 32-bit path would show.
inline double value(DType t, int rank, int64_t i) {
  switch (t) {
    case DType::i64: return double(rank) * 3 * 4294967296.0 + double(i);
    case DType::i32: return double(rank) * 100000 + double(i % 50000) - 7;
    default: return double((rank * 7 + i * 3) % 17 - 8);
  }
}

// (n): value(t, rank, first + i).
inline Tensor make(DType t, int rank, int64_t n, int64_t first = 0) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = value(t, rank, first + i);
  return Tensor::from_vector(v, {n}, t);
}

// Counts of an uneven split over `size` ranks; rank 1 gets none.
inline std::vector<int64_t> uneven_counts(int size, int64_t scale) {
  std::vector<int64_t> c;
  for (int r = 0; r < size; ++r) c.push_back(scale * ((r * 5 + 3) % 8));
  return c;
}

inline int64_t offset_of(const std::vector<int64_t>& counts, int rank) {
  int64_t o = 0;
  for (int r = 0; r < rank; ++r) o += counts[size_t(r)];
  return o;
}

// A reduction over all ranks of f(r), as the serial reference.
inline double reduce_serial(ReduceOp op, int size, const std::function<double(int)>& f) {
  double acc = f(0);
  for (int r = 1; r < size; ++r) acc = op == ReduceOp::max ? std::max(acc, f(r)) : acc + f(r);
  return op == ReduceOp::avg ? acc / size : acc;
}

// One failure per tensor at most, naming the first bad element and how many differ.
inline void expect_values(const Tensor& t, const std::vector<double>& expected) {
  std::vector<double> got = t.to_vector();
  ASSERT_EQ(got.size(), expected.size());
  double tol_rel = is_half(t.dtype()) ? 1e-2 : t.dtype() == DType::f32 ? 1e-6 : 0;
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (std::abs(got[i] - expected[i]) > tol_rel * std::max(1.0, std::abs(expected[i])) && bad++ == 0) first = i;
  EXPECT_EQ(bad, 0u) << dtype_name(t.dtype()) << ": first mismatch at " << first << ": got " << got[first]
                     << ", expected " << expected[first];
}

}  // namespace loom::dist::test
