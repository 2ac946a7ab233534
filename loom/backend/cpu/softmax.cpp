// Softmax / log-softmax CPU kernels: OpenMP over rows, each row handled while it sits in cache.
// All kernels work in place (y == x, dx == dy): element j is read before it is written.
#include "loom/backend/cpu/softmax.h"

#include <cmath>
#include <limits>

#include "loom/backend/cpu/vec_math.h"

namespace loom::cpu {
namespace {

constexpr int64_t kParallelGrain = 32768;  // below this many elements threads cost more than they save

template <typename T>
T row_max(const T* x, int64_t C) {
  T mx = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : mx)
  for (int64_t j = 0; j < C; ++j) mx = x[j] > mx ? x[j] : mx;  // not std::max: its reference blocks SIMD
  return mx;
}

}  // namespace

template <typename T>
void softmax_forward(const T* x, T* y, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static) if (N * C > kParallelGrain)
  for (int64_t i = 0; i < N; ++i) {
    const T* xi = x + i * C;  // (C)
    T* yi = y + i * C;        // (C)
    const T mx = row_max(xi, C);
    T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < C; ++j) {
      yi[j] = std::exp(xi[j] - mx);
      sum += yi[j];
    }
    const T inv = T(1) / sum;
#pragma omp simd
    for (int64_t j = 0; j < C; ++j) yi[j] *= inv;
  }
}

template <typename T>
void softmax_backward(const T* y, const T* dy, T* dx, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static) if (N * C > kParallelGrain)
  for (int64_t i = 0; i < N; ++i) {
    const T* yi = y + i * C;    // (C)
    const T* dyi = dy + i * C;  // (C)
    T* dxi = dx + i * C;        // (C)
    T dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int64_t j = 0; j < C; ++j) dot += dyi[j] * yi[j];
#pragma omp simd
    for (int64_t j = 0; j < C; ++j) dxi[j] = yi[j] * (dyi[j] - dot);
  }
}

template <typename T>
void log_softmax_forward(const T* x, T* y, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static) if (N * C > kParallelGrain)
  for (int64_t i = 0; i < N; ++i) {
    const T* xi = x + i * C;  // (C)
    T* yi = y + i * C;        // (C)
    const T mx = row_max(xi, C);
    T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < C; ++j) sum += std::exp(xi[j] - mx);
    const T lse = mx + std::log(sum);
#pragma omp simd
    for (int64_t j = 0; j < C; ++j) yi[j] = xi[j] - lse;
  }
}

template <typename T>
void log_softmax_backward(const T* y, const T* dy, T* dx, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static) if (N * C > kParallelGrain)
  for (int64_t i = 0; i < N; ++i) {
    const T* yi = y + i * C;    // (C)
    const T* dyi = dy + i * C;  // (C)
    T* dxi = dx + i * C;        // (C)
    T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < C; ++j) sum += dyi[j];
#pragma omp simd
    for (int64_t j = 0; j < C; ++j) dxi[j] = dyi[j] - std::exp(yi[j]) * sum;
  }
}

#define LOOM_INSTANTIATE(T)                                                   \
  template void softmax_forward<T>(const T*, T*, int64_t, int64_t);           \
  template void softmax_backward<T>(const T*, const T*, T*, int64_t, int64_t); \
  template void log_softmax_forward<T>(const T*, T*, int64_t, int64_t);       \
  template void log_softmax_backward<T>(const T*, const T*, T*, int64_t, int64_t);
LOOM_INSTANTIATE(float)
LOOM_INSTANTIATE(double)
#undef LOOM_INSTANTIATE

}  // namespace loom::cpu
