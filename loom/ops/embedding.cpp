// embedding: row lookup with a range check on every id; backward scatter-adds into the table.
#include "loom/autograd/function.h"
#include "loom/backend/cpu/embedding.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/nn.h"
#include "loom/ops/shape.h"

namespace loom::ops {

Tensor embedding(const Tensor& ids_in, const Tensor& weight_in) {
  LOOM_CHECK(weight_in.ndim() == 2, "embedding: weight must be (V, C), got {}", weight_in.shape());
  LOOM_CHECK(!is_floating(ids_in.dtype()), "embedding: ids must be integers, got {}", dtype_name(ids_in.dtype()));
  if (is_half(weight_in.dtype())) return cast(embedding(ids_in, cast(weight_in, DType::f32)), weight_in.dtype());
  Tensor ids = contiguous(cast(ids_in, DType::i64));
  const int64_t V = weight_in.size(0), C = weight_in.size(1), N = ids.numel();
  const int64_t* pid = ids.data<int64_t>();
  for (int64_t i = 0; i < N; ++i)
    LOOM_CHECK(pid[i] >= 0 && pid[i] < V, "embedding: id {} at position {} is out of range for a vocabulary of {}", pid[i], i, V);
  Tensor w = contiguous(weight_in.detach());
  Shape out_shape = ids.shape();
  out_shape.push_back(C);
  Tensor y = Tensor::empty(out_shape, w.dtype());
  dispatch_float(w.dtype(), "embedding", [&](auto tag) {
    using T = decltype(tag);
    cpu::embedding_forward<T>(pid, w.data<T>(), y.data<T>(), N, C);
  });
  // The gradient only touches the rows of the ids: where the weight already has a gradient
  // (a tied head's) it is added there, without a dense (V, C) buffer of its own.
  auto add_into = [ids, V, C, N](const Tensor& g_in, Tensor& dw) {
    if (dw.shape() != Shape{V, C} || dw.dtype() != g_in.dtype()) return false;
    Tensor g = contiguous(g_in);
    dispatch_float(g.dtype(), "embedding backward", [&](auto tag) {
      using T = decltype(tag);
      cpu::embedding_backward<T>(ids.data<int64_t>(), g.data<T>(), dw.data<T>(), N, C);
    });
    return true;
  };
  autograd::attach(
      y, "embedding", {weight_in},
      [add_into, V, C](const Tensor& g) {
        Tensor dw = Tensor::zeros({V, C}, g.dtype());
        add_into(g, dw);
        return std::vector<Tensor>{dw};
      },
      add_into);
  return y;
}

}  // namespace loom::ops
