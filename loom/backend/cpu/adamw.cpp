// Fused AdamW CPU kernel: a single pass over p, g, m, v (the step is memory-bound, so touching each
// buffer once is what matters). Bias corrections are hoisted out of the loop in double, as PyTorch
// computes them from Python floats.
#include "loom/backend/cpu/adamw.h"

#include <cmath>

namespace loom::cpu {
namespace {

constexpr int64_t kParallelGrain = 65536;  // below this many elements threads cost more than they save

}  // namespace

void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2, float eps,
                float weight_decay, int64_t step, float grad_scale) {
  const double bias1 = 1.0 - std::pow(double(beta1), double(step));
  const double bias2 = 1.0 - std::pow(double(beta2), double(step));
  const float step_size = float(double(lr) / bias1);
  const float inv_sqrt_bias2 = float(1.0 / std::sqrt(bias2));
  const float decay = 1.0f - lr * weight_decay;
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i] * grad_scale;
    const float mi = beta1 * m[i] + (1.0f - beta1) * gi;
    const float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - step_size * mi / (std::sqrt(vi) * inv_sqrt_bias2 + eps);
  }
}

}  // namespace loom::cpu
