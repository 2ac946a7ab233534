// Input and layout checks shared by the quantisers.
#include "loom/quant/common.h"

#include <algorithm>
#include <cmath>

#include "loom/autograd/function.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/shape.h"

namespace loom::quant {

Tensor finite_f32(const Tensor& x, const char* op) {
  LOOM_CHECK(x.has_memory(), "{}: the tensor has no memory (deferred or released)", op);
  LOOM_CHECK(x.dtype() == DType::f32 || is_half(x.dtype()), "{}: expected f32, bf16 or f16, got {}", op, dtype_name(x.dtype()));
  LOOM_CHECK(x.numel() > 0, "{}: empty tensor {}", op, x.shape());
  autograd::NoGradGuard no_grad;
  Tensor f = ops::contiguous(ops::cast(x.detach(), DType::f32));
  const float* p = f.data<float>();
  const int64_t n = f.numel();
  int64_t bad = n;
#pragma omp parallel for reduction(min : bad) if (n > 65536)
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(p[i])) bad = std::min(bad, i);
  LOOM_CHECK(bad == n, "{}: element {} of {} is {}", op, bad, x.shape(), double(p[bad < n ? bad : 0]));
  return f;
}

void check_quantized(const Tensor& t, DType dtype, int64_t numel, const char* what) {
  LOOM_CHECK(t.defined() && t.dtype() == dtype && t.numel() == numel && t.is_contiguous(),
             "{} must be a contiguous {} tensor of {} elements", what, dtype_name(dtype), numel);
}

void check_block(const Shape& whole, const Shape& offset, const Shape& box, const char* op) {
  LOOM_CHECK(whole.size() == 2 && offset.size() == 2 && box.size() == 2 && offset[0] >= 0 && offset[1] >= 0 && box[0] > 0 && box[1] > 0 &&
                 offset[0] + box[0] <= whole[0] && offset[1] + box[1] <= whole[1],
             "{}: block {} at {} is not inside the 2-D weight {}", op, box, offset, whole);
}

}  // namespace loom::quant
