// Scaled-dot-product attention (fused flash-style kernel) and rotary position embedding.
#include <cmath>

#include "loom/autograd/function.h"
#include "loom/backend/cpu/attention.h"
#include "loom/backend/cpu/rope.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/nn.h"
#include "loom/ops/shape.h"

namespace loom::ops {

using autograd::attach;

Tensor scaled_dot_product_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, bool causal, const Tensor& doc_ids,
                                    double scale) {
  LOOM_CHECK(q_in.ndim() == 4 && k_in.ndim() == 4 && v_in.shape() == k_in.shape(),
             "attention: expected q (B, H, Tq, D) and k, v (B, Hkv, Tk, D), got q {} k {} v {}", q_in.shape(), k_in.shape(), v_in.shape());
  const int64_t B = q_in.size(0), H = q_in.size(1), Tq = q_in.size(2), D = q_in.size(3);
  const int64_t Hkv = k_in.size(1), Tk = k_in.size(2);
  LOOM_CHECK(k_in.size(0) == B && k_in.size(3) == D, "attention: k {} does not fit q {}", k_in.shape(), q_in.shape());
  LOOM_CHECK(Hkv >= 1 && H % Hkv == 0, "attention: {} query heads are not a multiple of {} kv heads", H, Hkv);
  LOOM_CHECK(!causal || Tq <= Tk, "attention: causal with {} queries but only {} keys", Tq, Tk);
  LOOM_CHECK(q_in.dtype() == k_in.dtype() && q_in.dtype() == v_in.dtype(), "attention: dtypes differ (q {}, k {}, v {})",
             dtype_name(q_in.dtype()), dtype_name(k_in.dtype()), dtype_name(v_in.dtype()));
  Tensor doc;
  if (doc_ids.defined()) {
    LOOM_CHECK(Tq == Tk && doc_ids.shape() == Shape({B, Tk}) && !is_floating(doc_ids.dtype()),
               "attention: doc_ids must be integer (B, T) = ({}, {}) with Tq == Tk, got {} {}", B, Tk, dtype_name(doc_ids.dtype()),
               doc_ids.shape());
    doc = contiguous(cast(doc_ids, DType::i32));
  }
  if (is_half(q_in.dtype()))
    return cast(scaled_dot_product_attention(cast(q_in, DType::f32), cast(k_in, DType::f32), cast(v_in, DType::f32), causal, doc, scale),
                q_in.dtype());
  const double s = scale == 0.0 ? 1.0 / std::sqrt(double(D)) : scale;
  Tensor q = contiguous(q_in.detach()), k = contiguous(k_in.detach()), v = contiguous(v_in.detach());
  Tensor out = Tensor::empty(q.shape(), q.dtype()), lse = Tensor::empty({B, H, Tq}, q.dtype());
  const int32_t* pdoc = doc.defined() ? doc.data<int32_t>() : nullptr;
  dispatch_float(q.dtype(), "attention", [&](auto tag) {
    using T = decltype(tag);
    cpu::attention_forward<T>(q.data<T>(), k.data<T>(), v.data<T>(), pdoc, out.data<T>(), lse.data<T>(), B, H, Hkv, Tq, Tk, D, T(s), causal);
  });
  attach(out, "attention", {q_in, k_in, v_in}, [q, k, v, doc, o = out.detach(), lse, B, H, Hkv, Tq, Tk, D, s, causal](const Tensor& g_in) {
    Tensor g = contiguous(g_in);
    Tensor dq = Tensor::empty(q.shape(), q.dtype()), dk = Tensor::empty(k.shape(), k.dtype()), dv = Tensor::empty(v.shape(), v.dtype());
    dispatch_float(q.dtype(), "attention backward", [&](auto tag) {
      using T = decltype(tag);
      cpu::attention_backward<T>(q.data<T>(), k.data<T>(), v.data<T>(), doc.defined() ? doc.data<int32_t>() : nullptr, o.data<T>(),
                                 lse.data<T>(), g.data<T>(), dq.data<T>(), dk.data<T>(), dv.data<T>(), B, H, Hkv, Tq, Tk, D, T(s), causal);
    });
    return std::vector<Tensor>{dq, dk, dv};
  });
  return out;
}

namespace {
Tensor rope_kernel(const Tensor& x_in, double theta, const Tensor& pos, bool inverse) {
  Tensor x = contiguous(x_in);
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  const int64_t* pp = pos.defined() ? pos.data<int64_t>() : nullptr;
  dispatch_float(x.dtype(), "rope", [&](auto tag) {
    using T = decltype(tag);
    cpu::rope_forward<T>(x.data<T>(), y.data<T>(), pp, x.size(0), x.size(1), x.size(2), x.size(3), theta, inverse, pos.defined() && pos.ndim() == 2);
  });
  return y;
}
}  // namespace

Tensor rope(const Tensor& x, double theta, const Tensor& positions) {
  LOOM_CHECK(x.ndim() == 4 && x.size(3) % 2 == 0, "rope: expected (B, T, H, D) with even D, got {}", x.shape());
  LOOM_CHECK(theta > 0, "rope: theta {} must be positive", theta);
  Tensor pos;
  if (positions.defined()) {
    LOOM_CHECK((positions.shape() == Shape({x.size(1)}) || positions.shape() == Shape({x.size(0), x.size(1)})) && !is_floating(positions.dtype()),
               "rope: positions must be integer (T) = ({}) or (B, T) = ({}, {}), got {} {}", x.size(1), x.size(0), x.size(1),
               dtype_name(positions.dtype()), positions.shape());
    pos = contiguous(cast(positions, DType::i64));
  }
  if (is_half(x.dtype())) return cast(rope(cast(x, DType::f32), theta, pos), x.dtype());
  Tensor y = rope_kernel(x.detach(), theta, pos, false);
  attach(y, "rope", {x}, [theta, pos](const Tensor& g) { return std::vector<Tensor>{rope_kernel(g, theta, pos, true)}; });
  return y;
}

Tensor document_ids(const Tensor& positions) {
  LOOM_CHECK(positions.ndim() == 2 && !is_floating(positions.dtype()), "document_ids: positions must be integer (B, T), got {} {}",
             dtype_name(positions.dtype()), positions.shape());
  const Tensor pos = contiguous(cast(positions, DType::i64));
  Tensor doc = Tensor::empty(pos.shape(), DType::i32);
  const int64_t* p = pos.data<int64_t>();
  int32_t* d = doc.data<int32_t>();
  const int64_t B = pos.size(0), T = pos.size(1);
  for (int64_t b = 0; b < B; ++b) {
    int32_t id = 0;
    for (int64_t t = 0; t < T; ++t) {
      if (t > 0 && p[b * T + t] == 0) ++id;
      d[b * T + t] = id;
    }
  }
  return doc;
}

}  // namespace loom::ops
