// Model-parallel benchmark, run under mpirun (bench/run shows the commands):
//   bench_model_parallel PRESET B T MICRO STEPS TP PP [SCHEDULE VIRTUAL]
// trains on random tokens with dp = world / (tp·pp), MICRO micro-batches of B×T per step and
// data-parallel rank, through parallel::parallelize as `loom train` does, and prints (rank 0):
// the median step time; the peak of tensor memory per rank over the timed steps (largest rank);
// the bytes each rank handed to its tp and pp groups per step (largest rank) beside the
// analytical count; and the pipeline's bubble — the mean over ranks of the time spent waiting
// for another stage, over the step time — beside theory. One process is the baseline (TP = PP = 1).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

#include "loom/core/allocator.h"
#include "loom/core/rng.h"
#include "loom/dist/mesh.h"
#include "loom/dist/world.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/shape.h"
#include "loom/parallel/parallelize.h"

using namespace loom;

int main(int argc, char** argv) {
  std::shared_ptr<dist::Group> world = dist::init(&argc, &argv);
  if (argc < 8) {
    std::fprintf(stderr, "usage: bench_model_parallel PRESET B T MICRO STEPS TP PP [SCHEDULE VIRTUAL]\n");
    return 2;
  }
  const std::string preset = argv[1], schedule = argc > 8 ? argv[8] : "1f1b";
  const int64_t B = std::stol(argv[2]), T = std::stol(argv[3]), micro = std::stol(argv[4]), steps = std::stol(argv[5]);
  const int tp = std::stoi(argv[6]), pp = std::stoi(argv[7]), virt = argc > 9 ? std::stoi(argv[9]) : 1;
  dist::abort_on_error([&] {
    const dist::Mesh mesh(world, {world->size() / (tp * pp), tp, pp});
    nn::TransformerLM model(models::preset(preset), true);  // deferred: each rank initialises what it holds
    const models::ModelConfig c = model.config();
    parallel::ParallelConfig pc;
    pc.materialize = [](nn::TransformerLM& m, const nn::TransformerLM::PlaceFn& place) { m.init(0, place); };
    pc.pipeline = {schedule, virt, {}};
    auto par = parallel::parallelize(model, mesh, pc);
    std::vector<double> times;
    uint64_t tp_bytes = 0, pp_bytes = 0;
    double idle = 0;
    for (int64_t s = 0; s <= steps; ++s) {  // step 0 warms the allocator and caches up
      std::vector<data::Batch> batches;
      for (int64_t i = 0; i < micro; ++i) {
        const uint64_t at = uint64_t(((s * micro + i) * mesh.dims().dp + mesh.coords().dp) * B * (T + 1));
        Tensor ids = ops::cast(ops::mul(rand({B, T + 1}, {1, at}), double(c.vocab_size)), DType::i64);
        batches.push_back({ops::contiguous(ops::narrow(ids, 1, 0, T)), ops::contiguous(ops::narrow(ids, 1, 1, T))});
      }
      if (s == 1) {
        CpuAllocator::instance().reset_peak();
        tp_bytes = mesh.tp()->bytes_handed();
        pp_bytes = mesh.pp()->bytes_handed();
        idle = par->pipeline() ? par->pipeline()->idle_seconds() : 0;
      }
      world->barrier()->wait();
      const auto t0 = std::chrono::steady_clock::now();
      par->forward_backward(batches, 1.0 / double(B * T * micro * mesh.dims().dp));
      par->data().clip_grad_norm(1.0);
      par->data().step(1e-4);
      par->data().zero_grad();
      if (s > 0) times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    double total = 0;
    for (double t : times) total += t;
    std::sort(times.begin(), times.end());
    const double t = dist::all_reduce_value(*world, times[times.size() / 2], dist::ReduceOp::max);
    const double peak = dist::all_reduce_value(*world, double(CpuAllocator::instance().stats().peak_bytes), dist::ReduceOp::max);
    const double tpb = dist::all_reduce_value(*world, double(mesh.tp()->bytes_handed() - tp_bytes) / double(steps), dist::ReduceOp::max);
    const double ppb = dist::all_reduce_value(*world, double(mesh.pp()->bytes_handed() - pp_bytes) / double(steps), dist::ReduceOp::max);
    const double bubble =
        dist::all_reduce_value(*world, ((par->pipeline() ? par->pipeline()->idle_seconds() : 0) - idle) / total, dist::ReduceOp::sum) / world->size();
    // Analytical bytes per step and rank. tp: per micro-batch the embedding's and each block's two
    // row-parallel all-reduces forward, each block's two norms' and the final norm's backward, the
    // loss's three values per token; plus the gradient norm. pp: a stage sends each micro-batch's
    // activation on and its gradient back for each of its chunks that has a neighbour there (the
    // largest: a middle stage, or the first of two); plus the gradient norm and the loss.
    const double act = double(B * T * c.n_embd * 4), L = double(c.n_layer) / pp;
    const double tp_theory = tp > 1 ? double(micro) * (act * (2 + 4 * L) + 12.0 * double(B * T)) + 8 : 0;
    const int sends = pp == 1 ? 0 : pp == 2 ? 2 * virt - 1 : 2 * virt;
    const double pp_theory = pp > 1 ? double(micro) * act * sends + 16 : 0;
    const double theory = pp > 1 ? double(pp - 1) / double(virt * micro + pp - 1) : 0;
    if (world->rank() == 0)
      std::printf("%s dp %d × tp %d × pp %d (%s, v %d), %ld×%ld×%ld micro-batches, %d threads/rank: %.3f s/step  peak tensor memory %.3f GB/rank"
                  "  tp %.2f MB/step (theory %.2f)  pp %.2f MB/step (theory %.2f)  bubble %.3f (theory %.3f)\n",
                  preset.c_str(), mesh.dims().dp, tp, pp, schedule.c_str(), virt, long(micro), long(B), long(T), omp_get_max_threads(), t,
                  peak / 1e9, tpb / 1e6, tp_theory / 1e6, ppb / 1e6, pp_theory / 1e6, bubble, theory);
  });
  dist::finalize();
  return 0;
}
