// Fused cross-entropy CPU kernels: OpenMP over rows; each row's logsumexp is accumulated online
// over vocab chunks that fit in L1, so the (possibly 50k-wide) row is streamed from memory once.
#include "loom/backend/cpu/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "loom/core/error.h"

#include "loom/backend/cpu/vec_math.h"

namespace loom::cpu {
namespace {

constexpr int64_t kParallelGrain = 32768;  // below this many elements threads cost more than they save
constexpr int64_t kVocabChunk = 2048;      // columns per online-logsumexp step; 8-16 KiB, stays in L1

// Serial O(N) scan, so the error is raised outside any OpenMP region and before any output is written.
void check_targets(const int64_t* targets, int64_t N, int64_t V, int64_t ignore_index) {
  for (int64_t i = 0; i < N; ++i) {
    const int64_t t = targets[i];
    LOOM_CHECK(t == ignore_index || (t >= 0 && t < V), "cross_entropy: target {} at row {} is out of range [0, {})",
               t, i, V);
  }
}

// logsumexp of the (V) row x. Keeps a running max m and sum s of exp(x - m); a chunk with a larger
// max rescales s once, so each element costs one exp.
template <typename T>
T online_logsumexp(const T* x, int64_t V) {
  T m = -std::numeric_limits<T>::infinity();
  T s = 0;
  for (int64_t c0 = 0; c0 < V; c0 += kVocabChunk) {
    const int64_t c1 = std::min(V, c0 + kVocabChunk);
    T cm = m;
#pragma omp simd reduction(max : cm)
    for (int64_t j = c0; j < c1; ++j) cm = x[j] > cm ? x[j] : cm;  // not std::max: its reference blocks SIMD
    if (cm > m) {  // first chunk: exp(-inf) * 0 = 0
      s *= std::exp(m - cm);
      m = cm;
    }
#pragma omp simd reduction(+ : s)
    for (int64_t j = c0; j < c1; ++j) s += std::exp(x[j] - m);
  }
  return m + std::log(s);
}

}  // namespace

template <typename T>
void cross_entropy_forward(const T* logits, const int64_t* targets, T* loss, T* lse, int64_t N, int64_t V,
                           int64_t ldv, int64_t ignore_index) {
  check_targets(targets, N, V, ignore_index);
#pragma omp parallel for schedule(static) if (N * V > kParallelGrain)
  for (int64_t i = 0; i < N; ++i) {
    if (targets[i] == ignore_index) {
      loss[i] = T(0);
      lse[i] = T(0);
      continue;
    }
    const T* row = logits + i * ldv;  // (V) used of (ldv)
    lse[i] = online_logsumexp(row, V);
    loss[i] = lse[i] - row[targets[i]];
  }
}

template <typename T>
void cross_entropy_backward(const T* logits, const int64_t* targets, const T* lse, const T* dloss, T* dlogits,
                            int64_t N, int64_t V, int64_t ldv, int64_t ignore_index) {
  check_targets(targets, N, V, ignore_index);
#pragma omp parallel for schedule(static) if (N * V > kParallelGrain)
  for (int64_t i = 0; i < N; ++i) {
    const T* row = logits + i * ldv;  // (ldv)
    T* drow = dlogits + i * ldv;      // (ldv)
    const int64_t t = targets[i];
    if (t == ignore_index) {
      std::fill(drow, drow + ldv, T(0));
      continue;
    }
    const T li = lse[i], g = dloss[i];
#pragma omp simd
    for (int64_t j = 0; j < V; ++j) drow[j] = std::exp(row[j] - li) * g;
    drow[t] -= g;
    std::fill(drow + V, drow + ldv, T(0));
  }
}

#define LOOM_INSTANTIATE(T)                                                                                     \
  template void cross_entropy_forward<T>(const T*, const int64_t*, T*, T*, int64_t, int64_t, int64_t, int64_t); \
  template void cross_entropy_backward<T>(const T*, const int64_t*, const T*, const T*, T*, int64_t, int64_t,   \
                                          int64_t, int64_t);
LOOM_INSTANTIATE(float)
LOOM_INSTANTIATE(double)
#undef LOOM_INSTANTIATE

}  // namespace loom::cpu
