// Causal attention benchmark at GPT-2 124M shapes: Loom's fused ops::scaled_dot_product_attention,
// forward+backward through autograd, against PyTorch 1.13's composed softmax(QKᵀ·scale + mask)V
// (bench/torch_reference.py). Target: Loom faster.
#include "bench/bench_util.h"

namespace loom::bench {
namespace {

void attention(const BatchShape& s) {
  const std::string id = "attention_fwdbwd/" + s.name();
  add("loom/" + id, [=](benchmark::State& st) {
    FreeCacheOnExit free_cache;
    const Shape shape{s.B, H, s.T, D};
    Tensor q = leaf(uniform(shape, 1)), k = leaf(uniform(shape, 2)), v = leaf(uniform(shape, 3));
    Tensor dout = uniform(shape, 4);
    timed_loop(st, [&] {
      ops::scaled_dot_product_attention(q, k, v, true).backward(dout);
      benchmark::DoNotOptimize(q.grad().data<float>());
      q.zero_grad(), k.zero_grad(), v.zero_grad();
    });
    // Nominal FLOPs, as torch_reference.py counts them: the forward's two (T, T, D) products and
    // the backward's four, each 2·T²·D per head and halved by the causal mask.
    count_flops(st, 6.0 * double(s.B * H) * double(s.T) * double(s.T) * double(D));
  }, "torch/" + id, 1.0);
}

[[maybe_unused]] const bool registered = [] {
  for (const BatchShape& s : batch_shapes) attention(s);
  return true;
}();

}  // namespace
}  // namespace loom::bench
