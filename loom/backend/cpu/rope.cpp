// Rotary embedding CPU kernel: builds a (T, D/2) cos/sin table once ((B·T, D/2) for per-row
// positions), then rotates every (b, t) row of H heads in parallel. The table costs at most
// B·T·D/2 trig calls against B·T·H·D rotated values.
#include "loom/backend/cpu/rope.h"

#include <cmath>
#include <vector>

#include "loom/core/error.h"

namespace loom::cpu {
namespace {

constexpr int64_t kParallelGrain = 32768;  // below this many elements threads cost more than they save

}  // namespace

template <typename T>
void rope_forward(const T* x, T* y, const int64_t* pos, int64_t B, int64_t T_, int64_t H, int64_t D, double theta,
                  bool inverse, bool per_row) {
  LOOM_CHECK(D % 2 == 0, "rope: head size {} must be even", D);
  const int64_t half = D / 2;

  // HF: inv_freq = 1 / theta ** (arange(0, D, 2) / D), every step in T.
  std::vector<T> inv_freq(half);  // (D/2)
  for (int64_t j = 0; j < half; ++j) inv_freq[j] = T(1) / std::pow(T(theta), T(2 * j) / T(D));

  const T sign = inverse ? T(-1) : T(1);
  const int64_t rows = per_row ? B * T_ : T_;
  std::vector<T> cos_table(rows * half), sin_table(rows * half);  // (rows, D/2)
#pragma omp parallel for schedule(static) if (rows * half > kParallelGrain)
  for (int64_t t = 0; t < rows; ++t) {
    const T p = T(pos ? pos[t] : t);
    for (int64_t j = 0; j < half; ++j) {
      const T angle = p * inv_freq[j];
      cos_table[t * half + j] = std::cos(angle);
      sin_table[t * half + j] = sign * std::sin(angle);  // sin(-a) = -sin(a) exactly
    }
  }

#pragma omp parallel for schedule(static) if (B * T_ * H * D > kParallelGrain)
  for (int64_t bt = 0; bt < B * T_; ++bt) {
    const int64_t row = per_row ? bt : bt % T_;
    const T* cs = cos_table.data() + row * half;  // (D/2)
    const T* sn = sin_table.data() + row * half;  // (D/2)
    for (int64_t h = 0; h < H; ++h) {
      const T* xr = x + (bt * H + h) * D;  // (D)
      T* yr = y + (bt * H + h) * D;        // (D)
#pragma omp simd
      for (int64_t j = 0; j < half; ++j) {
        const T a = xr[j], b = xr[j + half];  // both read before either write: in place is safe
        yr[j] = a * cs[j] - b * sn[j];
        yr[j + half] = b * cs[j] + a * sn[j];
      }
    }
  }
}

template void rope_forward<float>(const float*, float*, const int64_t*, int64_t, int64_t, int64_t, int64_t, double,
                                  bool, bool);
template void rope_forward<double>(const double*, double*, const int64_t*, int64_t, int64_t, int64_t, int64_t,
                                   double, bool, bool);

}  // namespace loom::cpu
