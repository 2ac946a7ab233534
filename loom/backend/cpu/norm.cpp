// LayerNorm and RMSNorm CPU kernels: one parallel pass over rows, SIMD over channels.
// Backward reductions over rows (dw, db) go through fixed-size row chunks so the result does
// not depend on the OpenMP thread count.
#include "loom/backend/cpu/norm.h"

#include <algorithm>
#include <cmath>
#include <memory>

namespace loom::cpu {
namespace {

constexpr int64_t kParallelGrain = 32768;  // below this many elements threads cost more than they save
constexpr int64_t kRowsPerChunk = 64;      // fixed, never derived from the thread count (determinism)

// Runs row_fn(i, acc_a, acc_b) for every row i in [0, N). acc_a / acc_b are (C) accumulators private
// to the row's chunk (nullptr when sum_a / sum_b is nullptr); row_fn adds that row's contribution.
// Afterwards sum_a / sum_b (C) are overwritten with the per-chunk accumulators summed in chunk order.
template <typename T, typename RowFn>
void rows_with_column_sums(int64_t N, int64_t C, T* sum_a, T* sum_b, RowFn row_fn) {
  const int64_t width_a = sum_a ? C : 0;
  const int64_t width = width_a + (sum_b ? C : 0);
  const int64_t n_chunks = (N + kRowsPerChunk - 1) / kRowsPerChunk;
  // (n_chunks, width); each chunk zeroes its own slice inside the parallel loop.
  std::unique_ptr<T[]> partial(width > 0 ? new T[n_chunks * width] : nullptr);

#pragma omp parallel for schedule(static) if (N * C > kParallelGrain)
  for (int64_t chunk = 0; chunk < n_chunks; ++chunk) {
    T* acc = partial.get() + chunk * width;
    for (int64_t j = 0; j < width; ++j) acc[j] = T(0);
    T* acc_a = sum_a ? acc : nullptr;
    T* acc_b = sum_b ? acc + width_a : nullptr;
    const int64_t end = std::min(N, (chunk + 1) * kRowsPerChunk);
    for (int64_t i = chunk * kRowsPerChunk; i < end; ++i) row_fn(i, acc_a, acc_b);
  }

  if (width == 0) return;
  T* out = partial.get();  // chunk 0 becomes the running total
  for (int64_t chunk = 1; chunk < n_chunks; ++chunk) {
    const T* src = partial.get() + chunk * width;
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) out[j] += src[j];
  }
  if (sum_a) std::copy(out, out + C, sum_a);
  if (sum_b) std::copy(out + width_a, out + width, sum_b);
}

}  // namespace

template <typename T>
void layer_norm_forward(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, int64_t N, int64_t C, T eps) {
#pragma omp parallel for schedule(static) if (N * C > kParallelGrain)
  for (int64_t i = 0; i < N; ++i) {
    const T* xi = x + i * C;  // (C)
    T* yi = y + i * C;        // (C)
    T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < C; ++j) sum += xi[j];
    const T mu = sum / T(C);
    // Second pass over the (cached) row: centred variance is stable where E[x^2] - mu^2 is not.
    T sq = 0;
#pragma omp simd reduction(+ : sq)
    for (int64_t j = 0; j < C; ++j) sq += (xi[j] - mu) * (xi[j] - mu);
    const T r = T(1) / std::sqrt(sq / T(C) + eps);
#pragma omp simd
    for (int64_t j = 0; j < C; ++j) {
      const T scale = w ? w[j] : T(1);
      const T shift = b ? b[j] : T(0);
      yi[j] = (xi[j] - mu) * r * scale + shift;
    }
    mean[i] = mu;
    rstd[i] = r;
  }
}

// With xhat = (x - mean) * rstd and g = dy * w:
// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)); dw = sum_rows dy * xhat; db = sum_rows dy.
template <typename T>
void layer_norm_backward(const T* dy, const T* x, const T* w, const T* mean, const T* rstd, T* dx, T* dw, T* db,
                         int64_t N, int64_t C) {
  rows_with_column_sums<T>(N, C, dw, db, [&](int64_t i, T* acc_w, T* acc_b) {
    const T* dyi = dy + i * C;  // (C)
    const T* xi = x + i * C;    // (C)
    T* dxi = dx + i * C;        // (C)
    const T mu = mean[i], r = rstd[i];
    T sum_g = 0, sum_gx = 0;
#pragma omp simd reduction(+ : sum_g, sum_gx)
    for (int64_t j = 0; j < C; ++j) {
      const T g = dyi[j] * (w ? w[j] : T(1));
      sum_g += g;
      sum_gx += g * (xi[j] - mu) * r;
    }
    const T mean_g = sum_g / T(C), mean_gx = sum_gx / T(C);
#pragma omp simd
    for (int64_t j = 0; j < C; ++j) {
      const T g = dyi[j] * (w ? w[j] : T(1));
      dxi[j] = r * (g - mean_g - (xi[j] - mu) * r * mean_gx);
    }
    if (acc_w) {
#pragma omp simd
      for (int64_t j = 0; j < C; ++j) acc_w[j] += dyi[j] * (xi[j] - mu) * r;
    }
    if (acc_b) {
#pragma omp simd
      for (int64_t j = 0; j < C; ++j) acc_b[j] += dyi[j];
    }
  });
}

template <typename T>
void rms_norm_forward(const T* x, const T* w, T* y, T* rstd, int64_t N, int64_t C, T eps) {
#pragma omp parallel for schedule(static) if (N * C > kParallelGrain)
  for (int64_t i = 0; i < N; ++i) {
    const T* xi = x + i * C;  // (C)
    T* yi = y + i * C;        // (C)
    T sq = 0;
#pragma omp simd reduction(+ : sq)
    for (int64_t j = 0; j < C; ++j) sq += xi[j] * xi[j];
    const T r = T(1) / std::sqrt(sq / T(C) + eps);
#pragma omp simd
    for (int64_t j = 0; j < C; ++j) yi[j] = xi[j] * r * w[j];
    rstd[i] = r;
  }
}

// With g = dy * w: dx = rstd * (g - x * rstd^2 * mean(g * x)); dw = sum_rows dy * x * rstd.
template <typename T>
void rms_norm_backward(const T* dy, const T* x, const T* w, const T* rstd, T* dx, T* dw, int64_t N, int64_t C) {
  rows_with_column_sums<T>(N, C, dw, nullptr, [&](int64_t i, T* acc_w, T*) {
    const T* dyi = dy + i * C;  // (C)
    const T* xi = x + i * C;    // (C)
    T* dxi = dx + i * C;        // (C)
    const T r = rstd[i];
    T sum_gx = 0;
#pragma omp simd reduction(+ : sum_gx)
    for (int64_t j = 0; j < C; ++j) sum_gx += dyi[j] * w[j] * xi[j];
    const T coef = r * r * sum_gx / T(C);
#pragma omp simd
    for (int64_t j = 0; j < C; ++j) dxi[j] = r * (dyi[j] * w[j] - xi[j] * coef);
    if (acc_w) {
#pragma omp simd
      for (int64_t j = 0; j < C; ++j) acc_w[j] += dyi[j] * xi[j] * r;
    }
  });
}

#define LOOM_INSTANTIATE(T)                                                                                   \
  template void layer_norm_forward<T>(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, T);        \
  template void layer_norm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, int64_t, \
                                       int64_t);                                                              \
  template void rms_norm_forward<T>(const T*, const T*, T*, T*, int64_t, int64_t, T);                         \
  template void rms_norm_backward<T>(const T*, const T*, const T*, const T*, T*, T*, int64_t, int64_t);
LOOM_INSTANTIATE(float)
LOOM_INSTANTIATE(double)
#undef LOOM_INSTANTIATE

}  // namespace loom::cpu
