// layer_norm and rms_norm over the last dim, on the fused CPU kernels.
#include "loom/autograd/function.h"
#include "loom/backend/cpu/norm.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/nn.h"
#include "loom/ops/shape.h"

namespace loom::ops {

namespace {
void check_param(const Tensor& p, const Tensor& x, const char* op, const char* what) {
  if (!p.defined()) return;
  LOOM_CHECK(p.ndim() == 1 && p.size(0) == x.size(-1), "{}: {} of shape {} does not fit input {}", op, what, p.shape(), x.shape());
  LOOM_CHECK(p.dtype() == x.dtype(), "{}: {} dtype {} differs from input dtype {}", op, what, dtype_name(p.dtype()), dtype_name(x.dtype()));
}
Tensor maybe_cast(const Tensor& t, DType d) { return t.defined() ? cast(t, d) : t; }
}  // namespace

Tensor layer_norm(const Tensor& x_in, const Tensor& weight, const Tensor& bias, double eps) {
  LOOM_CHECK(x_in.ndim() >= 1, "layer_norm: input must have at least 1 dim");
  check_param(weight, x_in, "layer_norm", "weight");
  check_param(bias, x_in, "layer_norm", "bias");
  if (is_half(x_in.dtype()))
    return cast(layer_norm(cast(x_in, DType::f32), maybe_cast(weight, DType::f32), maybe_cast(bias, DType::f32), eps), x_in.dtype());
  Tensor x = contiguous(x_in.detach());
  Tensor w = weight.defined() ? contiguous(weight.detach()) : Tensor(), b = bias.defined() ? contiguous(bias.detach()) : Tensor();
  const int64_t C = x.size(-1), N = x.numel() / std::max<int64_t>(C, 1);
  Tensor y = Tensor::empty(x.shape(), x.dtype()), mean = Tensor::empty({N}, x.dtype()), rstd = Tensor::empty({N}, x.dtype());
  dispatch_float(x.dtype(), "layer_norm", [&](auto tag) {
    using T = decltype(tag);
    cpu::layer_norm_forward<T>(x.data<T>(), w.defined() ? w.data<T>() : nullptr, b.defined() ? b.data<T>() : nullptr, y.data<T>(),
                               mean.data<T>(), rstd.data<T>(), N, C, T(eps));
  });
  autograd::attach(y, "layer_norm", {x_in, weight, bias}, [x, w, mean, rstd, N, C, has_b = bias.defined()](const Tensor& g_in) {
    Tensor g = contiguous(g_in);
    Tensor dx = Tensor::empty(x.shape(), x.dtype());
    Tensor dw = w.defined() ? Tensor::empty({C}, x.dtype()) : Tensor(), db = has_b ? Tensor::empty({C}, x.dtype()) : Tensor();
    dispatch_float(x.dtype(), "layer_norm backward", [&](auto tag) {
      using T = decltype(tag);
      cpu::layer_norm_backward<T>(g.data<T>(), x.data<T>(), w.defined() ? w.data<T>() : nullptr, mean.data<T>(), rstd.data<T>(),
                                  dx.data<T>(), dw.defined() ? dw.data<T>() : nullptr, db.defined() ? db.data<T>() : nullptr, N, C);
    });
    return std::vector<Tensor>{dx, dw, db};
  });
  return y;
}

Tensor rms_norm(const Tensor& x_in, const Tensor& weight, double eps) {
  LOOM_CHECK(x_in.ndim() >= 1 && weight.defined(), "rms_norm: needs an input of at least 1 dim and a weight");
  check_param(weight, x_in, "rms_norm", "weight");
  if (is_half(x_in.dtype())) return cast(rms_norm(cast(x_in, DType::f32), cast(weight, DType::f32), eps), x_in.dtype());
  Tensor x = contiguous(x_in.detach()), w = contiguous(weight.detach());
  const int64_t C = x.size(-1), N = x.numel() / std::max<int64_t>(C, 1);
  Tensor y = Tensor::empty(x.shape(), x.dtype()), rstd = Tensor::empty({N}, x.dtype());
  dispatch_float(x.dtype(), "rms_norm", [&](auto tag) {
    using T = decltype(tag);
    cpu::rms_norm_forward<T>(x.data<T>(), w.data<T>(), y.data<T>(), rstd.data<T>(), N, C, T(eps));
  });
  autograd::attach(y, "rms_norm", {x_in, weight}, [x, w, rstd, N, C](const Tensor& g_in) {
    Tensor g = contiguous(g_in);
    Tensor dx = Tensor::empty(x.shape(), x.dtype()), dw = Tensor::empty({C}, x.dtype());
    dispatch_float(x.dtype(), "rms_norm backward", [&](auto tag) {
      using T = decltype(tag);
      cpu::rms_norm_backward<T>(g.data<T>(), x.data<T>(), w.data<T>(), rstd.data<T>(), dx.data<T>(), dw.data<T>(), N, C);
    });
    return std::vector<Tensor>{dx, dw};
  });
  return y;
}

}  // namespace loom::ops
