// Activation CPU kernels: one parallel SIMD loop each; forward and backward share the scalar
// formulas below so the two can never drift apart.
#include "loom/backend/cpu/activation.h"

#include <algorithm>
#include <cmath>

#include "loom/backend/cpu/vec_math.h"

namespace loom::cpu {
namespace {

constexpr int64_t kParallelGrain = 65536;  // elementwise work is cheap: threads pay off later than for rows
// Fixed block size: which elements take the vector path and which the tail path (their last bit may
// differ) depends only on n, never on the thread count.
constexpr int64_t kBlock = 4096;

// Calls fn(begin, end) for consecutive blocks of [0, n), in parallel above the grain.
template <typename Fn>
void for_each_block(int64_t n, Fn fn) {
  const int64_t n_blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t blk = 0; blk < n_blocks; ++blk) fn(blk * kBlock, std::min(n, (blk + 1) * kBlock));
}

constexpr double kGeluAlpha = 0.7978845608028654;  // sqrt(2 / pi)
constexpr double kGeluBeta = 0.044715;

// tanh(sqrt(2/pi) (x + 0.044715 x^3)), the term gelu and its derivative share.
template <typename T>
T gelu_tanh(T x) {
  return std::tanh(T(kGeluAlpha) * (x + T(kGeluBeta) * x * x * x));
}

template <typename T>
T gelu(T x) {
  return T(0.5) * x * (T(1) + gelu_tanh(x));
}

template <typename T>
T gelu_derivative(T x) {
  const T t = gelu_tanh(x);
  const T du = T(kGeluAlpha) * (T(1) + T(3) * T(kGeluBeta) * x * x);  // d/dx of tanh's argument
  return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du;
}

// sigmoid(x) = 1 / (1 + exp(-x)): exp overflows to inf for x << 0, giving the correct limit 0.
template <typename T>
T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

template <typename T>
T silu(T x) {
  return x * sigmoid(x);
}

// silu'(x) = s + x s (1 - s) with s = sigmoid(x).
template <typename T>
T silu_derivative(T x, T s) {
  return s * (T(1) + x * (T(1) - s));
}

}  // namespace

template <typename T>
void gelu_forward(const T* x, T* y, int64_t n) {
  for_each_block(n, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) y[i] = gelu(x[i]);
  });
}

template <typename T>
void gelu_backward(const T* x, const T* dy, T* dx, int64_t n) {
  for_each_block(n, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) dx[i] = dy[i] * gelu_derivative(x[i]);
  });
}

template <typename T>
void silu_forward(const T* x, T* y, int64_t n) {
  for_each_block(n, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) y[i] = silu(x[i]);
  });
}

template <typename T>
void silu_backward(const T* x, const T* dy, T* dx, int64_t n) {
  for_each_block(n, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) dx[i] = dy[i] * silu_derivative(x[i], sigmoid(x[i]));
  });
}

template <typename T>
void swiglu_forward(const T* gate, const T* up, T* y, int64_t n) {
  for_each_block(n, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) y[i] = silu(gate[i]) * up[i];
  });
}

template <typename T>
void swiglu_backward(const T* gate, const T* up, const T* dy, T* dgate, T* dup, int64_t n) {
  for_each_block(n, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const T g = gate[i], u = up[i], d = dy[i];  // read all before writing: dgate/dup may alias inputs
      const T s = sigmoid(g);
      dgate[i] = d * u * silu_derivative(g, s);
      dup[i] = d * g * s;
    }
  });
}

#define LOOM_INSTANTIATE(T)                                                    \
  template void gelu_forward<T>(const T*, T*, int64_t);                        \
  template void gelu_backward<T>(const T*, const T*, T*, int64_t);             \
  template void silu_forward<T>(const T*, T*, int64_t);                        \
  template void silu_backward<T>(const T*, const T*, T*, int64_t);             \
  template void swiglu_forward<T>(const T*, const T*, T*, int64_t);            \
  template void swiglu_backward<T>(const T*, const T*, const T*, T*, T*, int64_t);
LOOM_INSTANTIATE(float)
LOOM_INSTANTIATE(double)
#undef LOOM_INSTANTIATE

}  // namespace loom::cpu
