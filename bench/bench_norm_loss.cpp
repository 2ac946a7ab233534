// Memory-bound op benchmarks at GPT-2 124M shapes, in GB/s: layer_norm and the LM head's
// cross_entropy, forward+backward, both through ops + autograd and as the raw cpu:: kernels,
// against PyTorch 1.13's F.layer_norm / F.cross_entropy (bench/torch_reference.py).
#include "bench/bench_util.h"
#include "loom/backend/cpu/cross_entropy.h"
#include "loom/backend/cpu/norm.h"

namespace loom::bench {
namespace {

// Nominal traffic, the same as torch_reference.py counts: layer_norm reads x and writes y, then
// reads dy and x and writes dx (5 (N, C) passes); cross_entropy reads the logits, then reads them
// again and writes dlogits (3 (N, V) passes). Per-row statistics and (C)-sized params are left out.
double layer_norm_bytes(const BatchShape& s) { return 5.0 * double(s.rows() * C) * sizeof(float); }
double cross_entropy_bytes(const BatchShape& s) { return 3.0 * double(s.rows() * V) * sizeof(float); }

void layer_norm(const BatchShape& s) {
  const std::string ref = "torch/layer_norm_fwdbwd/" + s.name();
  add("loom/layer_norm_fwdbwd/op/" + s.name(), [=](benchmark::State& st) {
    FreeCacheOnExit free_cache;
    Tensor x = leaf(uniform({s.B, s.T, C}, 1)), w = leaf(uniform({C}, 2)), b = leaf(uniform({C}, 3));
    Tensor dy = uniform({s.B, s.T, C}, 4);
    timed_loop(st, [&] {
      ops::layer_norm(x, w, b).backward(dy);
      benchmark::DoNotOptimize(x.grad().data<float>());
      x.zero_grad(), w.zero_grad(), b.zero_grad();
    });
    count_bytes(st, layer_norm_bytes(s));
  }, ref);
  add("loom/layer_norm_fwdbwd/kernel/" + s.name(), [=](benchmark::State& st) {
    FreeCacheOnExit free_cache;
    const int64_t n = s.rows();
    Tensor x = uniform({n, C}, 1), w = uniform({C}, 2), b = uniform({C}, 3), dy = uniform({n, C}, 4);
    Tensor y = Tensor::empty({n, C}), dx = Tensor::empty({n, C}), mean = Tensor::empty({n}), rstd = Tensor::empty({n});
    Tensor dw = Tensor::empty({C}), db = Tensor::empty({C});
    timed_loop(st, [&] {
      cpu::layer_norm_forward(x.data<float>(), w.data<float>(), b.data<float>(), y.data<float>(), mean.data<float>(),
                              rstd.data<float>(), n, C, 1e-5f);
      cpu::layer_norm_backward(dy.data<float>(), x.data<float>(), w.data<float>(), mean.data<float>(), rstd.data<float>(),
                               dx.data<float>(), dw.data<float>(), db.data<float>(), n, C);
      benchmark::DoNotOptimize(dx.data<float>());
    });
    count_bytes(st, layer_norm_bytes(s));
  }, ref);
}

// Targets spread over [0, V) by a multiplicative hash, as i64 (what cpu::cross_entropy_* take).
Tensor random_targets(const Shape& shape) {
  std::vector<int64_t> t(size_t(numel_of(shape)));
  for (size_t i = 0; i < t.size(); ++i) t[i] = int64_t((i * 2654435761ull + 12345) % uint64_t(V));
  return Tensor::from_ints(t, shape);
}

// Logits (B·T, Vp) with the padded columns left out (num_classes = V), as llm.c's LM head.
void cross_entropy(const BatchShape& s) {
  const std::string ref = "torch/cross_entropy_fwdbwd/" + s.name();
  add("loom/cross_entropy_fwdbwd/op/" + s.name(), [=](benchmark::State& st) {
    FreeCacheOnExit free_cache;
    Tensor logits = leaf(uniform({s.B, s.T, Vp}, 1, -4.0f, 4.0f));
    Tensor targets = random_targets({s.B, s.T});
    timed_loop(st, [&] {
      ops::cross_entropy(logits, targets, -100, ops::Reduction::mean, V).backward();
      benchmark::DoNotOptimize(logits.grad().data<float>());
      logits.zero_grad();
    });
    count_bytes(st, cross_entropy_bytes(s));
  }, ref);
  add("loom/cross_entropy_fwdbwd/kernel/" + s.name(), [=](benchmark::State& st) {
    FreeCacheOnExit free_cache;
    const int64_t n = s.rows();
    Tensor logits = uniform({n, Vp}, 1, -4.0f, 4.0f), dlogits = Tensor::empty({n, Vp});
    Tensor targets = random_targets({n}), loss = Tensor::empty({n}), lse = Tensor::empty({n});
    Tensor dloss = Tensor::full({n}, 1.0 / double(n));
    timed_loop(st, [&] {
      cpu::cross_entropy_forward(logits.data<float>(), targets.data<int64_t>(), loss.data<float>(), lse.data<float>(), n, V, Vp,
                                 int64_t(-100));
      cpu::cross_entropy_backward(logits.data<float>(), targets.data<int64_t>(), lse.data<float>(), dloss.data<float>(),
                                  dlogits.data<float>(), n, V, Vp, int64_t(-100));
      benchmark::DoNotOptimize(dlogits.data<float>());
    });
    count_bytes(st, cross_entropy_bytes(s));
  }, ref);
}

[[maybe_unused]] const bool registered = [] {
  for (const BatchShape& s : batch_shapes) {
    layer_norm(s);
    cross_entropy(s);
  }
  return true;
}();

}  // namespace
}  // namespace loom::bench
