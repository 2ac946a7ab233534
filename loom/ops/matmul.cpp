// matmul and linear: shape rules, BLAS layout selection, and their backward passes.
#include "loom/ops/matmul.h"

#include <optional>

#include "loom/autograd/function.h"
#include "loom/backend/cpu/gemm.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/reduce.h"
#include "loom/ops/shape.h"

namespace loom::ops {

using autograd::attach;

namespace {

struct BlasMat {
  bool trans;
  int64_t ld;
};

// How the BLAS can read a (rows, cols) matrix with strides (rs, cs), if it can at all.
std::optional<BlasMat> blas_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  if ((cs == 1 || cols == 1) && (rows == 1 || rs >= std::max<int64_t>(cols, 1))) return BlasMat{false, rows == 1 ? std::max<int64_t>(cols, 1) : rs};
  if ((rs == 1 || rows == 1) && (cols == 1 || cs >= std::max<int64_t>(rows, 1))) return BlasMat{true, cols == 1 ? std::max<int64_t>(rows, 1) : cs};
  return std::nullopt;
}

// x (..., R, C) made readable by the BLAS: x itself, or a contiguous copy.
Tensor blas_ready(const Tensor& x) {
  int64_t n = x.ndim();
  bool ok = blas_layout(x.shape()[size_t(n - 2)], x.shape()[size_t(n - 1)], x.strides()[size_t(n - 2)], x.strides()[size_t(n - 1)]).has_value();
  return ok ? x : contiguous(x);
}

BlasMat layout_of(const Tensor& x) {
  int64_t n = x.ndim();
  return *blas_layout(x.shape()[size_t(n - 2)], x.shape()[size_t(n - 1)], x.strides()[size_t(n - 2)], x.strides()[size_t(n - 1)]);
}

Tensor matmul_forward(const Tensor& a_in, const Tensor& b_in) {
  const int64_t M = a_in.size(-2), K = a_in.size(-1), N = b_in.size(-1);
  Shape batch = broadcast_shapes(Shape(a_in.shape().begin(), a_in.shape().end() - 2), Shape(b_in.shape().begin(), b_in.shape().end() - 2), "matmul");
  Shape out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);
  Tensor out = Tensor::empty(out_shape, a_in.dtype());
  if (out.numel() == 0) return out;
  Shape a_shape = batch, b_shape = batch;
  a_shape.insert(a_shape.end(), {M, K});
  b_shape.insert(b_shape.end(), {K, N});
  // A 2-D b against a contiguous a: one GEMM over all (batch·M) rows.
  Tensor a = a_in, b = b_in;
  if (b.ndim() == 2 && a.is_contiguous()) {
    a = reshape(a.detach(), {-1, K});
  } else {
    a = blas_ready(expand(a.detach(), a_shape));
  }
  b = blas_ready(b.ndim() == 2 ? b.detach() : expand(b.detach(), b_shape));
  BlasMat la = layout_of(a), lb = layout_of(b);
  const int64_t nb = a.ndim() == 2 ? 1 : numel_of(batch);
  const int64_t rows = a.ndim() == 2 ? a.size(0) : M;
  dispatch_float(a.dtype(), "matmul", [&](auto tag) {
    using T = decltype(tag);
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* po = out.data<T>();
    for (int64_t i = 0; i < nb; ++i) {
      int64_t oa = 0, ob = 0, r = i;
      for (int64_t d = int64_t(batch.size()) - 1; d >= 0 && nb > 1; --d) {
        int64_t k = r % batch[size_t(d)];
        r /= batch[size_t(d)];
        oa += k * a.strides()[size_t(d)];
        if (b.ndim() > 2) ob += k * b.strides()[size_t(d)];
      }
      cpu::gemm<T>(la.trans, lb.trans, rows, N, K, T(1), pa + oa, la.ld, pb + ob, lb.ld, T(0), po + i * rows * N, N);
    }
  });
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  LOOM_CHECK(a.ndim() >= 2 && b.ndim() >= 2, "matmul: needs tensors of at least 2 dims, got {} and {}", a.shape(), b.shape());
  LOOM_CHECK(a.size(-1) == b.size(-2), "matmul: inner sizes differ: {} @ {}", a.shape(), b.shape());
  LOOM_CHECK(a.dtype() == b.dtype(), "matmul: dtype mismatch {} vs {}", dtype_name(a.dtype()), dtype_name(b.dtype()));
  if (is_half(a.dtype())) return cast(matmul(cast(a, DType::f32), cast(b, DType::f32)), a.dtype());
  Tensor y = matmul_forward(a, b);
  // Each input is saved only for the other's gradient.
  const bool need_a = a.requires_grad(), need_b = b.requires_grad();
  attach(y, "matmul", {a, b}, [a = need_b ? a : Tensor(), b = need_a ? b : Tensor(), sa = a.shape(), sb = b.shape()](const Tensor& g) -> std::vector<Tensor> {
    Tensor da, db;
    if (b.defined()) da = sum_to(matmul(g, transpose(b, -1, -2)), sa);
    if (a.defined()) {
      if (sb.size() == 2)  // fold the batch into the rows: one GEMM, no (batch, K, N) temporary
        db = matmul(transpose(reshape(a, {-1, a.size(-1)}), 0, 1), reshape(g, {-1, g.size(-1)}));
      else
        db = sum_to(matmul(transpose(a, -1, -2), g), sb);
    }
    return {da, db};
  });
  return y;
}

Tensor linear(const Tensor& x_in, const Tensor& weight, const Tensor& bias) {
  LOOM_CHECK(weight.ndim() == 2 && x_in.ndim() >= 1 && x_in.size(-1) == weight.size(1),
             "linear: input {} does not fit weight {} (expected (..., {}))", x_in.shape(), weight.shape(),
             weight.ndim() == 2 ? weight.size(1) : -1);
  LOOM_CHECK(!bias.defined() || (bias.ndim() == 1 && bias.size(0) == weight.size(0)), "linear: bias {} does not fit weight {}",
             bias.shape(), weight.shape());
  LOOM_CHECK(x_in.dtype() == weight.dtype() && (!bias.defined() || bias.dtype() == weight.dtype()),
             "linear: dtype mismatch (input {}, weight {})", dtype_name(x_in.dtype()), dtype_name(weight.dtype()));
  if (is_half(x_in.dtype()))
    return cast(linear(cast(x_in, DType::f32), cast(weight, DType::f32), bias.defined() ? cast(bias, DType::f32) : bias), x_in.dtype());
  const int64_t in = weight.size(1), out_f = weight.size(0);
  Tensor x = contiguous(x_in.detach()), w = contiguous(weight.detach());
  const int64_t N = x.numel() / std::max<int64_t>(in, 1);
  Shape out_shape = x.shape();
  out_shape.back() = out_f;
  Tensor y = Tensor::empty(out_shape, x.dtype());
  dispatch_float(x.dtype(), "linear", [&](auto tag) {
    using T = decltype(tag);
    T* py = y.data<T>();
    if (bias.defined()) {
      Tensor bc = contiguous(bias.detach());
      const T* pb = bc.data<T>();
#pragma omp parallel for if (N * out_f > 65536)
      for (int64_t i = 0; i < N; ++i) std::copy(pb, pb + out_f, py + i * out_f);
    }
    cpu::gemm<T>(false, true, N, out_f, in, T(1), x.data<T>(), in, w.data<T>(), in, T(bias.defined() ? 1 : 0), py, out_f);
  });
  attach(y, "linear", {x_in, weight, bias}, [x, w, N, in, out_f, need_x = x_in.requires_grad(), need_w = weight.requires_grad(),
                                             need_b = bias.defined() && bias.requires_grad()](const Tensor& g_in) -> std::vector<Tensor> {
    Tensor g = contiguous(g_in);
    Tensor dx, dw, db;
    dispatch_float(g.dtype(), "linear backward", [&](auto tag) {
      using T = decltype(tag);
      const T* pg = g.data<T>();
      if (need_x) {
        dx = Tensor::empty(x.shape(), x.dtype());
        cpu::gemm<T>(false, false, N, in, out_f, T(1), pg, out_f, w.data<T>(), in, T(0), dx.data<T>(), in);
      }
      if (need_w) {
        dw = Tensor::empty(w.shape(), w.dtype());
        cpu::gemm<T>(true, false, out_f, in, N, T(1), pg, out_f, x.data<T>(), in, T(0), dw.data<T>(), in);
      }
    });
    if (need_b) db = sum(reshape(g, {N, out_f}), {0});
    return {dx, dw, db};
  });
  return y;
}

}  // namespace loom::ops
