// cross_entropy: the fused softmax + negative log-likelihood of the LM head.
#include <cmath>

#include "loom/autograd/function.h"
#include "loom/backend/cpu/cross_entropy.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/nn.h"
#include "loom/ops/reduce.h"
#include "loom/ops/shape.h"

namespace loom::ops {

Tensor cross_entropy(const Tensor& logits_in, const Tensor& targets_in, int64_t ignore_index, Reduction reduction, int64_t num_classes) {
  LOOM_CHECK(logits_in.ndim() >= 1, "cross_entropy: logits must have at least 1 dim");
  Shape lead(logits_in.shape().begin(), logits_in.shape().end() - 1);
  LOOM_CHECK(targets_in.shape() == lead, "cross_entropy: targets of shape {} do not fit logits of shape {}", targets_in.shape(),
             logits_in.shape());
  LOOM_CHECK(!is_floating(targets_in.dtype()), "cross_entropy: targets must be integers, got {}", dtype_name(targets_in.dtype()));
  const int64_t ldv = logits_in.size(-1);
  const int64_t V = num_classes < 0 ? ldv : num_classes;
  LOOM_CHECK(V >= 1 && V <= ldv, "cross_entropy: num_classes {} must be in [1, {}]", num_classes, ldv);
  if (is_half(logits_in.dtype()))
    return cast(cross_entropy(cast(logits_in, DType::f32), targets_in, ignore_index, reduction, num_classes), logits_in.dtype());

  Tensor logits = contiguous(logits_in.detach());
  Tensor targets = contiguous(cast(targets_in, DType::i64));
  const int64_t N = targets.numel();
  Tensor loss = Tensor::empty(lead, logits.dtype()), lse = Tensor::empty({N}, logits.dtype());
  int64_t count = 0;
  const int64_t* pt = targets.data<int64_t>();
  for (int64_t i = 0; i < N; ++i) count += pt[i] != ignore_index;
  dispatch_float(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    cpu::cross_entropy_forward<T>(logits.data<T>(), pt, loss.data<T>(), lse.data<T>(), N, V, ldv, ignore_index);
  });
  std::vector<double> per_row = loss.to_vector();
  for (size_t i = 0; i < per_row.size(); ++i)
    LOOM_CHECK(std::isfinite(per_row[i]), "cross_entropy: loss at position {} is {} (the logits hold a NaN or infinity)", i, per_row[i]);

  // The loss graph is one node whose incoming gradient is per row: none passes it through,
  // sum/mean broadcast one scalar (mean divides by the number of counted targets).
  const double scale = reduction == Reduction::mean ? 1.0 / double(std::max<int64_t>(count, 1)) : 1.0;
  Tensor out = loss;
  if (reduction != Reduction::none) {
    double total = 0;
    for (double v : per_row) total += v;
    out = Tensor::full({}, total * scale, logits.dtype());
  }
  autograd::attach(out, "cross_entropy", {logits_in}, [logits, targets, lse, N, V, ldv, ignore_index, scale, reduction](const Tensor& g) {
    Tensor dloss = reduction == Reduction::none ? contiguous(g) : Tensor::full({N}, g.item() * scale, logits.dtype());
    // Each element's gradient needs only that element's logit: when nothing else can see the
    // saved logits (the usual case: the model's output is a temporary), the gradient overwrites
    // them instead of taking a second (N, V) buffer.
    const bool sole = logits.impl_ptr().use_count() == 1 && logits.storage().use_count() == 1 && logits.offset() == 0 &&
                      logits.nbytes() == logits.storage()->nbytes();
    Tensor dlogits = sole ? logits : Tensor::empty(logits.shape(), logits.dtype());
    dispatch_float(logits.dtype(), "cross_entropy backward", [&](auto tag) {
      using T = decltype(tag);
      cpu::cross_entropy_backward<T>(logits.data<T>(), targets.data<int64_t>(), lse.data<T>(), dloss.data<T>(), dlogits.data<T>(), N, V,
                                     ldv, ignore_index);
    });
    return std::vector<Tensor>{dlogits};
  });
  return out;
}

}  // namespace loom::ops
