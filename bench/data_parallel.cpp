// Data-parallel benchmarks, run under mpirun (bench/run shows the commands):
//   memory PRESET B T   peak allocator bytes per rank over a training step for ZeRO 0-3, next
//                       to the ZeRO formula for model states (16Ψ, 8Ψ+8Ψ/N, 4Ψ+12Ψ/N, 16Ψ/N);
//   overlap PRESET B T STEPS   DDP median step time; on N ranks also the step without any
//                       communication, the gradient all-reduces alone, and so the communication
//                       hidden behind backward = (no-comm step + all-reduces alone) - step. Run
//                       it on N ranks and as one process with batch N·B (OMP_NUM_THREADS sets
//                       the threads of each).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

#include "loom/core/allocator.h"
#include "loom/core/rng.h"
#include "loom/dist/world.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/shape.h"
#include "loom/parallel/data_parallel.h"

using namespace loom;

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double reduce_max(dist::Group& g, double v) {
  Tensor t = Tensor::full({1}, v, DType::f64);
  g.all_reduce(t, dist::ReduceOp::max)->wait();
  return t.item();
}

struct Step {
  double total = 0, finish = 0;
};

// One training step on a batch of random tokens; rank and step pick the batch. Without sync the
// gradients are not communicated at all (a timing baseline, not training).
Step train_step(nn::TransformerLM& model, parallel::DataParallel& dp, int64_t B, int64_t T, int64_t step, bool sync = true) {
  const int64_t V = model.config().vocab_size;
  const uint64_t offset = uint64_t((step * dp.group().size() + dp.group().rank()) * B * (T + 1));
  Tensor ids = ops::cast(ops::mul(rand({B, T + 1}, {1, offset}), double(V)), DType::i64);
  const auto t0 = Clock::now();
  dp.before_forward();
  Tensor loss = model.loss(model.forward(ops::narrow(ids, 1, 0, T)), ops::narrow(ids, 1, 1, T));
  dp.backward(loss, sync);
  const auto t1 = Clock::now();
  if (sync) dp.finish();
  Step s;
  s.finish = since(t1);
  dp.clip_grad_norm(1.0);
  dp.step(1e-4);
  dp.zero_grad();
  s.total = since(t0);
  return s;
}

void memory(const std::shared_ptr<dist::Group>& world, const std::string& preset, int64_t B, int64_t T) {
  const double N = world->size(), MB = 1024.0 * 1024.0;
  if (world->rank() == 0)
    std::printf("ZeRO memory per rank, %s, dp=%d, B=%ld T=%ld (model states: fp32 params, grads, AdamW m and v)\n", preset.c_str(),
                world->size(), long(B), long(T));
  for (int zero = 0; zero <= 3; ++zero) {
    CpuAllocator::instance().empty_cache();
    double psi = 0, peak = 0;
    {
      nn::TransformerLM model(models::preset(preset));
      model.init(0);
      psi = double(model.num_parameters());
      auto dp = parallel::DataParallel::create(model, world, {zero, 25.0, {}});
      train_step(model, *dp, B, T, 0);  // every buffer that lives across steps now exists
      CpuAllocator::instance().reset_peak();
      train_step(model, *dp, B, T, 1);
      peak = reduce_max(*world, double(CpuAllocator::instance().stats().peak_bytes));
    }
    const double formula[] = {16 * psi, 8 * psi + 8 * psi / N, 4 * psi + 12 * psi / N, 16 * psi / N};
    if (world->rank() == 0)
      std::printf("zero %d: peak %8.1f MB   formula %8.1f MB   peak/formula %.2f\n", zero, peak / MB, formula[zero] / MB, peak / formula[zero]);
  }
}

void overlap(const std::shared_ptr<dist::Group>& world, const std::string& preset, int64_t B, int64_t T, int64_t steps) {
  nn::TransformerLM model(models::preset(preset));
  model.init(0);
  auto dp = parallel::DataParallel::create(model, world, {0, 25.0, {}});
  std::vector<double> total, finish, compute;
  for (int64_t s = 0; s <= steps; ++s) {  // step 0 warms up
    Step r = train_step(model, *dp, B, T, s);
    if (s > 0) total.push_back(reduce_max(*world, r.total)), finish.push_back(reduce_max(*world, r.finish));
    if (s > 0 && world->size() > 1) compute.push_back(reduce_max(*world, train_step(model, *dp, B, T, s, false).total));
  }
  // The same all-reduces with nothing to overlap: 25 MB buckets of all the gradients.
  std::vector<double> alone;
  const int64_t n = model.num_parameters(), bucket = 25 * 1024 * 1024 / 4;
  for (int64_t s = 0; s < steps && world->size() > 1; ++s) {
    std::vector<Tensor> bufs;
    for (int64_t at = 0; at < n; at += bucket) bufs.push_back(Tensor::ones({std::min(bucket, n - at)}));
    world->barrier()->wait();
    const auto t0 = Clock::now();
    std::vector<std::shared_ptr<dist::Work>> works;
    for (Tensor& b : bufs) works.push_back(world->all_reduce(b, dist::ReduceOp::sum));
    for (auto& w : works) w->wait();
    alone.push_back(reduce_max(*world, since(t0)));
  }
  auto median = [](std::vector<double> v) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  if (world->rank() != 0) return;
  std::printf("DDP %s, %d rank(s) x %d thread(s), B=%ld per rank, T=%ld: step %.3f s", preset.c_str(), world->size(), omp_get_max_threads(),
              long(B), long(T), median(total));
  if (world->size() > 1) {
    const double a = median(alone), c = median(compute), hidden = c + a - median(total);
    std::printf(", without communication %.3f s, all-reduces alone %.3f s, waited for after backward %.3f s: hidden %.3f s (%.0f%%)", c, a,
                median(finish), hidden, 100.0 * hidden / a);
  }
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  auto world = dist::init(&argc, &argv);
  dist::abort_on_error([&] {
    LOOM_CHECK(argc >= 2, "usage: {} memory|overlap PRESET B T [STEPS]", argv[0]);
    const std::string mode = argv[1], preset = argc > 2 ? argv[2] : "gpt2-124M";
    const int64_t B = argc > 3 ? std::stol(argv[3]) : 1, T = argc > 4 ? std::stol(argv[4]) : 64, steps = argc > 5 ? std::stol(argv[5]) : 3;
    if (mode == "memory") memory(world, preset, B, T);
    else overlap(world, preset, B, T, steps);
  });
  world.reset();
  dist::finalize();
  return 0;
}
