// The strided loop every elementwise CPU kernel runs on: walks an N-d index space in row-major
// order for K operands with their own element strides (0 on broadcast dims), merging dims
// that are contiguous for every operand so that a dense tensor becomes one flat run.
#pragma once

#include <array>
#include <cstdint>

#include "loom/core/shape.h"

namespace loom::cpu {

// Calls body(offsets, n, steps) for runs of n elements along the innermost (merged) dim:
// operand k's elements are at offsets[k] + i * steps[k], i < n. Runs are at most kChunk long
// and are spread over OpenMP threads when the whole space is large; every element is visited
// exactly once, so results do not depend on the thread count.
template <size_t K, typename F>
void for_each_run(const Shape& shape, const std::array<Strides, K>& strides, F&& body) {
  constexpr int64_t kChunk = 16384;
  // Merge dim i into i+1 when every operand is contiguous across the pair; drop size-1 dims.
  Shape dims;
  std::array<Strides, K> st;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 1) continue;
    bool merge = !dims.empty();
    for (size_t k = 0; k < K && merge; ++k) merge = st[k].back() == strides[k][i] * shape[i];
    if (merge) {
      dims.back() *= shape[i];
      for (size_t k = 0; k < K; ++k) st[k].back() = strides[k][i];
    } else {
      dims.push_back(shape[i]);
      for (size_t k = 0; k < K; ++k) st[k].push_back(strides[k][i]);
    }
  }
  if (dims.empty()) {
    dims.push_back(1);
    for (size_t k = 0; k < K; ++k) st[k].push_back(0);
  }
  const int nd = int(dims.size());
  const int64_t inner = dims.back();
  int64_t outer = 1;
  for (int d = 0; d < nd - 1; ++d) outer *= dims[d];
  if (outer * inner == 0) return;
  const int64_t chunks = (inner + kChunk - 1) / kChunk;
  const int64_t units = outer * chunks;
  std::array<int64_t, K> steps;
  for (size_t k = 0; k < K; ++k) steps[k] = st[k].back();
#pragma omp parallel for schedule(static) if (outer * inner > 65536)
  for (int64_t u = 0; u < units; ++u) {
    int64_t row = u / chunks, c = u % chunks;
    std::array<int64_t, K> off{};
    int64_t r = row;
    for (int d = nd - 2; d >= 0; --d) {
      int64_t i = r % dims[d];
      r /= dims[d];
      for (size_t k = 0; k < K; ++k) off[k] += i * st[k][d];
    }
    int64_t start = c * kChunk, n = std::min(kChunk, inner - start);
    for (size_t k = 0; k < K; ++k) off[k] += start * steps[k];
    body(off, n, steps);
  }
}

}  // namespace loom::cpu
