// Activations (gelu, silu, swiglu), softmax/log_softmax over a dim, and dropout.
#include <cmath>

#include "loom/autograd/function.h"
#include "loom/backend/cpu/activation.h"
#include "loom/backend/cpu/softmax.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/nn.h"
#include "loom/ops/shape.h"

namespace loom::ops {

using autograd::attach;

namespace {

// Shared shape of gelu/silu: y = f(x) with a fused backward kernel dx = f'(x) * dy.
template <typename Fwd, typename Bwd>
Tensor pointwise(const Tensor& x_in, const char* op, Fwd fwd, Bwd bwd) {
  if (is_half(x_in.dtype())) return cast(pointwise(cast(x_in, DType::f32), op, fwd, bwd), x_in.dtype());
  Tensor x = contiguous(x_in.detach());
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    fwd(x.data<T>(), y.data<T>(), x.numel());
  });
  attach(y, op, {x_in}, [x, op, bwd](const Tensor& g_in) {
    Tensor g = contiguous(g_in), dx = Tensor::empty(x.shape(), x.dtype());
    dispatch_float(x.dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      bwd(x.data<T>(), g.data<T>(), dx.data<T>(), x.numel());
    });
    return std::vector<Tensor>{dx};
  });
  return y;
}

// Shared shape of softmax/log_softmax: the kernels work on the last dim, so other dims are
// moved last and back.
template <typename Fwd, typename Bwd>
Tensor softmax_like(const Tensor& x_in, int64_t dim, const char* op, Fwd fwd, Bwd bwd) {
  int d = normalize_dim(dim, x_in.ndim(), op);
  if (d != x_in.ndim() - 1) return transpose(softmax_like(transpose(x_in, d, -1), -1, op, fwd, bwd), d, -1);
  if (is_half(x_in.dtype())) return cast(softmax_like(cast(x_in, DType::f32), dim, op, fwd, bwd), x_in.dtype());
  Tensor x = contiguous(x_in.detach());
  const int64_t C = x.size(-1), N = x.numel() / std::max<int64_t>(C, 1);
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    fwd(x.data<T>(), y.data<T>(), N, C);
  });
  attach(y, op, {x_in}, [y = y.detach(), N, C, op, bwd](const Tensor& g_in) {
    Tensor g = contiguous(g_in), dx = Tensor::empty(y.shape(), y.dtype());
    dispatch_float(y.dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      bwd(y.data<T>(), g.data<T>(), dx.data<T>(), N, C);
    });
    return std::vector<Tensor>{dx};
  });
  return y;
}

// y = x * mask * scale with the mask drawn from (key, index of the element in the whole); used by
// forward and backward.
Tensor apply_dropout_mask(const Tensor& x_in, double p, RngKey key, int64_t whole_cols, int64_t col_offset) {
  Tensor x = contiguous(x_in);
  const int64_t cols = x.ndim() > 0 ? x.size(-1) : 1;
  if (whole_cols == 0) whole_cols = cols;
  LOOM_CHECK(col_offset >= 0 && col_offset + cols <= whole_cols, "dropout: columns [{}, {}) are outside rows of {}", col_offset,
             col_offset + cols, whole_cols);
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  const float keep_below = float(1.0 - p);  // uniform u in [0,1) keeps the element when u < 1-p
  dispatch_float(x.dtype(), "dropout", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data<T>();
    T* py = y.data<T>();
    const T scale = T(1.0 / (1.0 - p));
    const int64_t n = x.numel(), rows = cols == 0 ? 0 : n / cols;
#pragma omp parallel for if (n > 16384)
    for (int64_t r = 0; r < rows; ++r) {  // row r's element c is element (r, col_offset + c) of the whole
      const uint64_t at = key.offset + uint64_t(r * whole_cols + col_offset);
      for (int64_t c = 0, i = r * cols; c < cols; ++c, ++i)
        py[i] = uniform_at(key.seed, at + uint64_t(c)) < keep_below ? px[i] * scale : T(0);
    }
  });
  return y;
}

}  // namespace

Tensor gelu(const Tensor& x) {
  return pointwise(x, "gelu", [](auto* a, auto* b, int64_t n) { cpu::gelu_forward(a, b, n); },
                   [](auto* a, auto* g, auto* d, int64_t n) { cpu::gelu_backward(a, g, d, n); });
}

Tensor silu(const Tensor& x) {
  return pointwise(x, "silu", [](auto* a, auto* b, int64_t n) { cpu::silu_forward(a, b, n); },
                   [](auto* a, auto* g, auto* d, int64_t n) { cpu::silu_backward(a, g, d, n); });
}

Tensor swiglu(const Tensor& gate_in, const Tensor& up_in) {
  LOOM_CHECK(gate_in.shape() == up_in.shape() && gate_in.dtype() == up_in.dtype(), "swiglu: gate {} ({}) and up {} ({}) must match",
             gate_in.shape(), dtype_name(gate_in.dtype()), up_in.shape(), dtype_name(up_in.dtype()));
  if (is_half(gate_in.dtype())) return cast(swiglu(cast(gate_in, DType::f32), cast(up_in, DType::f32)), gate_in.dtype());
  Tensor gate = contiguous(gate_in.detach()), up = contiguous(up_in.detach());
  Tensor y = Tensor::empty(gate.shape(), gate.dtype());
  dispatch_float(gate.dtype(), "swiglu", [&](auto tag) {
    using T = decltype(tag);
    cpu::swiglu_forward<T>(gate.data<T>(), up.data<T>(), y.data<T>(), gate.numel());
  });
  attach(y, "swiglu", {gate_in, up_in}, [gate, up](const Tensor& g_in) {
    Tensor g = contiguous(g_in), dgate = Tensor::empty(gate.shape(), gate.dtype()), dup = Tensor::empty(gate.shape(), gate.dtype());
    dispatch_float(gate.dtype(), "swiglu backward", [&](auto tag) {
      using T = decltype(tag);
      cpu::swiglu_backward<T>(gate.data<T>(), up.data<T>(), g.data<T>(), dgate.data<T>(), dup.data<T>(), gate.numel());
    });
    return std::vector<Tensor>{dgate, dup};
  });
  return y;
}

Tensor softmax(const Tensor& x, int64_t dim) {
  return softmax_like(x, dim, "softmax", [](auto* a, auto* b, int64_t n, int64_t c) { cpu::softmax_forward(a, b, n, c); },
                      [](auto* y, auto* g, auto* d, int64_t n, int64_t c) { cpu::softmax_backward(y, g, d, n, c); });
}

Tensor log_softmax(const Tensor& x, int64_t dim) {
  return softmax_like(x, dim, "log_softmax", [](auto* a, auto* b, int64_t n, int64_t c) { cpu::log_softmax_forward(a, b, n, c); },
                      [](auto* y, auto* g, auto* d, int64_t n, int64_t c) { cpu::log_softmax_backward(y, g, d, n, c); });
}

Tensor dropout(const Tensor& x, double p, RngKey key, int64_t whole_cols, int64_t col_offset) {
  LOOM_CHECK(p >= 0.0 && p < 1.0, "dropout: probability {} must be in [0, 1)", p);
  if (p == 0.0) return x;
  if (is_half(x.dtype())) return cast(dropout(cast(x, DType::f32), p, key, whole_cols, col_offset), x.dtype());
  Tensor y = apply_dropout_mask(x.detach(), p, key, whole_cols, col_offset);
  attach(y, "dropout", {x}, [p, key, whole_cols, col_offset](const Tensor& g) {
    return std::vector<Tensor>{apply_dropout_mask(g, p, key, whole_cols, col_offset)};
  });
  return y;
}

}  // namespace loom::ops
