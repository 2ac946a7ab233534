// GEMM benchmarks at GPT-2 124M shapes: Loom's ops::linear / ops::matmul, forward and
// forward+backward, against cblas_sgemm called directly on the same shapes and layouts, the two
// alternated step by step (target: Loom at >= 90% of direct OpenBLAS).
#include <cblas.h>

#include "bench/bench_util.h"

namespace loom::bench {
namespace {

struct Layer {
  const char* name;
  int64_t in, out;
};
constexpr Layer layers[] = {{"qkv", C, 3 * C}, {"fc", C, 4 * C}, {"proj", 4 * C, C}, {"lm_head", C, Vp}};

void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* Cm) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(M), int(N), int(K), 1.0f, A,
              int(ta ? M : K), B, int(tb ? K : N), 0.0f, Cm, int(N));
}

// y = x Wᵀ with x: (B, T, in), W: (out, in), as GPT-2's nn.Linear (bias left out: its broadcast
// is not a GEMM). The reference is the one sgemm ops::linear issues.
void linear_fwd(const BatchShape& s, const Layer& l) {
  add_paired("loom/linear_fwd/" + std::string(l.name) + "/" + s.name(), [=](benchmark::State& st) {
    FreeCacheOnExit free_cache;
    const int64_t n = s.rows();
    Tensor x = uniform({s.B, s.T, l.in}, 1), w = uniform({l.out, l.in}, 2), y = Tensor::zeros({n, l.out});
    const double flops = 2.0 * double(n) * double(l.in) * double(l.out);
    paired_loop(st, "GFLOP/s", flops, [&] { benchmark::DoNotOptimize(ops::linear(x, w).data<float>()); },
                {{"cblas", flops, [&] { sgemm(false, true, n, l.out, l.in, x.data<float>(), w.data<float>(), y.data<float>()); }}});
  }, "cblas", 0.9);
}

// Forward and backward of linear through autograd: y = x Wᵀ, dx = dy W, dW = dyᵀ x (three GEMMs),
// with x and W leaves whose gradients are reset every step, as after an optimizer step.
void linear_fwd_bwd(const BatchShape& s, const Layer& l) {
  add_paired("loom/linear_fwdbwd/" + std::string(l.name) + "/" + s.name(), [=](benchmark::State& st) {
    FreeCacheOnExit free_cache;
    const int64_t n = s.rows();
    Tensor x = leaf(uniform({s.B, s.T, l.in}, 1)), w = leaf(uniform({l.out, l.in}, 2)), dy = uniform({s.B, s.T, l.out}, 3);
    Tensor y = Tensor::zeros({n, l.out}), dx = Tensor::zeros({n, l.in}), dw = Tensor::zeros({l.out, l.in});
    const double flops = 6.0 * double(n) * double(l.in) * double(l.out);
    const auto loom_step = [&] {
      ops::linear(x, w).backward(dy);
      benchmark::DoNotOptimize(w.grad().data<float>());
      x.zero_grad();
      w.zero_grad();
    };
    const auto cblas_step = [&] {
      const float *px = x.data<float>(), *pw = w.data<float>(), *pdy = dy.data<float>();
      sgemm(false, true, n, l.out, l.in, px, pw, y.data<float>());
      sgemm(false, false, n, l.in, l.out, pdy, pw, dx.data<float>());
      sgemm(true, false, l.out, l.in, n, pdy, px, dw.data<float>());
    };
    paired_loop(st, "GFLOP/s", flops, loom_step, {{"cblas", flops, cblas_step}});
  }, "cblas", 0.9);
}

// y = x @ W with x: (B, T, in), W: (in, out): ops::matmul folds the batch into one GEMM.
void matmul_fwd(const BatchShape& s, const Layer& l) {
  add_paired("loom/matmul_fwd/" + std::string(l.name) + "/" + s.name(), [=](benchmark::State& st) {
    FreeCacheOnExit free_cache;
    const int64_t n = s.rows();
    Tensor x = uniform({s.B, s.T, l.in}, 1), w = uniform({l.in, l.out}, 2), y = Tensor::zeros({n, l.out});
    const double flops = 2.0 * double(n) * double(l.in) * double(l.out);
    paired_loop(st, "GFLOP/s", flops, [&] { benchmark::DoNotOptimize(ops::matmul(x, w).data<float>()); },
                {{"cblas", flops, [&] { sgemm(false, false, n, l.out, l.in, x.data<float>(), w.data<float>(), y.data<float>()); }}});
  }, "cblas", 0.9);
}

[[maybe_unused]] const bool registered = [] {
  for (const BatchShape& s : batch_shapes) {
    for (const Layer& l : layers) {
      // At B=8, T=1024 the LM head is 0.63 TFLOP per GEMM (several seconds each on two cores)
      // and the three block layers take most of bench/run's budget already: there the LM head
      // is left out, and ops::matmul's forward (an NN GEMM, the layout of linear's dx, which
      // linear_fwdbwd covers) runs at the small shape only.
      const bool small = s.T == 64;
      if (!small && l.out == Vp) continue;
      linear_fwd(s, l);
      linear_fwd_bwd(s, l);
      if (small && l.out != Vp) matmul_fwd(s, l);
    }
  }
  return true;
}();

}  // namespace
}  // namespace loom::bench
