// End-to-end training step benchmark: one full AdamW step (forward, cross-entropy, backward,
// clipping, update) of a preset model, median over timed steps, with tokens/s, MFU, the peak of
// tensor memory (the allocator's high-water mark over the timed steps) and the process's peak
// RSS. bench/train_step_torch.py measures the same step in PyTorch.
// Usage: bench_train_step [preset] [B] [T] [steps] [none|blocks (activation recompute)]
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

#include "loom/core/rng.h"
#include "loom/nn/transformer.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/nn.h"
#include "loom/ops/shape.h"
#include "loom/dist/local_group.h"
#include "loom/core/allocator.h"
#include "loom/parallel/data_parallel.h"
#include "loom/parallel/recompute.h"
#include "loom/train/resources.h"
#include "loom/train/trainer.h"

using namespace loom;

int main(int argc, char** argv) {
  const std::string preset = argc > 1 ? argv[1] : "gpt2-124M";
  const int64_t B = argc > 2 ? std::stol(argv[2]) : 4, T = argc > 3 ? std::stol(argv[3]) : 64, steps = argc > 4 ? std::stol(argv[4]) : 5;
  const std::string recompute = argc > 5 ? argv[5] : "none";
  nn::TransformerLM model(models::preset(preset));
  model.init(0);
  HookHandle rc = recompute == "blocks" ? parallel::recompute_blocks(model) : HookHandle();
  // The trainer's own update path: DataParallel on one rank (clipping folded into AdamW).
  auto opt = parallel::DataParallel::create(model, std::make_shared<dist::LocalGroup>("dp"), {});
  const int64_t V = model.config().vocab_size;
  std::vector<double> times;
  for (int64_t s = 0; s <= steps; ++s) {  // step 0 warms the allocator and caches up
    Tensor ids = ops::cast(ops::mul(rand({B, T + 1}, {1, uint64_t(s * B * (T + 1))}), double(V)), DType::i64);
    Tensor in = ops::narrow(ids, 1, 0, T), tgt = ops::narrow(ids, 1, 1, T);
    if (s == 1) CpuAllocator::instance().reset_peak();
    const auto t0 = std::chrono::steady_clock::now();
    Tensor loss = model.loss(model.forward(in), tgt);
    loss.backward();
    opt->finish();
    opt->clip_grad_norm(1.0);
    opt->step(1e-4);
    opt->zero_grad();
    if (s > 0) times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  const double t = times[times.size() / 2];
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  const double tps = double(B * T) / t;
  const train::PeakFlops peak = train::cpu_peak_flops(omp_get_max_threads());
  std::printf("loom %s B=%ld T=%ld threads=%d recompute=%s: %.3f s/step  %.0f tokens/s  MFU %.1f%% of %.0f GFLOP/s  peak tensor memory %.2f GB  peak RSS %.2f GB\n",
              preset.c_str(), long(B), long(T), omp_get_max_threads(), recompute.c_str(), t, tps, 100.0 * train::flops_per_token(model, T) * tps / peak.flops,
              peak.flops / 1e9, double(CpuAllocator::instance().stats().peak_bytes) / 1e9, double(ru.ru_maxrss) / 1048576.0);
  return 0;
}
