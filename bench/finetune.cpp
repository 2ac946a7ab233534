// Fine-tuning memory and step time: one training step (forward, cross-entropy, backward, clipping,
// AdamW) of full fine-tuning, LoRA (r = 16, all-linear) and QLoRA (the same LoRA on an NF4 base,
// nn::quantize_base) on a preset's shape with random weights, side by side with the ratios to
// full fine-tuning. Each mode runs in a process of its own (fork), so the peak RSS is its own:
//   states              tensor memory that lives across steps: weights (quantised ones as stored),
//                       the trainable parameters' gradients and AdamW moments;
//   peak tensor memory  the allocator's high-water mark over the timed steps: the states plus the
//                       step's activations and temporaries;
//   peak RSS, steps     the process's resident high-water mark over the same steps (reset through
//                       /proc/self/clear_refs; "-" where the kernel refuses);
//   peak RSS, process   over the whole run, building the float model (and quantising it) included;
//   wall, CPU           median seconds per step, elapsed and of CPU (all threads): on a shared
//                       machine the wall time follows the load, the CPU time far less
//                       (OMP_WAIT_POLICY=passive, so that waiting threads burn none).
// Usage: bench_finetune [preset] [B] [T] [steps]
#include <omp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "loom/core/allocator.h"
#include "loom/core/rng.h"
#include "loom/dist/local_group.h"
#include "loom/nn/lora.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/shape.h"
#include "loom/parallel/data_parallel.h"
#include "loom/quant/linear.h"

using namespace loom;

namespace {

constexpr double GB = 1e9;

struct Result {
  double trainable = 0, states = 0, peak = 0, steps_rss = -1, process_rss = 0, wall = 0, cpu = 0;
};

// The process's resident high-water mark (VmHWM) in bytes, and its reset (false where refused).
double vm_hwm() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) * 1024.0;
  return -1;
}
bool reset_vm_hwm() { return bool(std::ofstream("/proc/self/clear_refs") << "5" << std::flush); }

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

Result run(const std::string& mode, const std::string& preset, int64_t B, int64_t T, int64_t steps) {
  nn::TransformerLM model(models::preset(preset));
  model.init(0);
  if (mode == "qlora") nn::quantize_base(model, "nf4");
  if (mode != "full") nn::apply_lora(model, {.r = 16, .alpha = 32}, 0);  // all-linear
  Result r;
  for (const Tensor& p : model.parameters()) r.trainable += p.requires_grad() ? double(p.numel()) : 0.0;
  // The trainer's update path: DataParallel on one rank.
  auto dp = parallel::DataParallel::create(model, std::make_shared<dist::LocalGroup>("dp"), {});
  const int64_t V = model.config().vocab_size;
  bool rss_reset = false;
  std::vector<double> wall, cpu;
  for (int64_t s = 0; s <= steps; ++s) {  // step 0 creates the gradients and AdamW state and warms the caches
    Tensor ids = ops::cast(ops::mul(rand({B, T + 1}, {1, uint64_t(s * B * (T + 1))}), double(V)), DType::i64);
    if (s == 1) {
      CpuAllocator::instance().empty_cache();
      CpuAllocator::instance().reset_peak();
      r.states = double(CpuAllocator::instance().stats().current_bytes);
      r.process_rss = vm_hwm();  // before the reset, which also resets getrusage's ru_maxrss
      rss_reset = reset_vm_hwm();
    }
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = cpu_seconds();
    dp->before_forward();
    dp->backward(model.loss(model.forward(ops::narrow(ids, 1, 0, T)), ops::narrow(ids, 1, 1, T)), true);
    dp->finish();
    dp->clip_grad_norm(1.0);
    dp->step(1e-4);
    dp->zero_grad();
    if (s == 0) continue;
    wall.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    cpu.push_back(cpu_seconds() - c0);
  }
  r.wall = median(wall);
  r.cpu = median(cpu);
  r.peak = double(CpuAllocator::instance().stats().peak_bytes);
  if (rss_reset) r.steps_rss = vm_hwm();
  r.process_rss = std::max(r.process_rss, vm_hwm());
  return r;
}

// run() in a child process; its Result comes back through a pipe.
Result run_in_child(const std::string& mode, const std::string& preset, int64_t B, int64_t T, int64_t steps) {
  int fds[2];
  LOOM_CHECK(::pipe(fds) == 0, "bench_finetune: pipe failed");
  const pid_t pid = ::fork();
  LOOM_CHECK(pid >= 0, "bench_finetune: fork failed");
  if (pid == 0) {
    ::close(fds[0]);
    const Result r = run(mode, preset, B, T, steps);
    const bool ok = ::write(fds[1], &r, sizeof r) == ssize_t(sizeof r);
    ::_exit(ok ? 0 : 1);
  }
  ::close(fds[1]);
  Result r;
  const ssize_t n = ::read(fds[0], &r, sizeof r);
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  LOOM_CHECK(n == ssize_t(sizeof r) && WIFEXITED(status) && WEXITSTATUS(status) == 0, "bench_finetune: the {} run failed", mode);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string preset = argc > 1 ? argv[1] : "qwen2-0.5B";
  const int64_t B = argc > 2 ? std::stol(argv[2]) : 1, T = argc > 3 ? std::stol(argv[3]) : 256, steps = argc > 4 ? std::stol(argv[4]) : 2;
  std::printf("fine-tuning step, %s, B=%ld T=%ld, %d threads, median of %ld steps after one warm-up; GB = 1e9 bytes; (ratio to full)\n", preset.c_str(),
              long(B), long(T), omp_get_max_threads(), long(steps));
  std::printf("%-6s %10s %9s  %15s  %15s  %17s  %15s  %15s\n", "mode", "trainable", "states GB", "peak tensor GB", "peak RSS steps",
              "peak RSS process", "wall s/step", "CPU s/step");
  std::vector<Result> results;
  for (const char* mode : {"full", "lora", "qlora"}) {
    const Result r = run_in_child(mode, preset, B, T, steps);
    const Result& full = results.empty() ? r : results[0];
    auto cell = [](double v, double ref, double unit) { return v < 0 ? std::string("-") : fmt::format("{:.3f} ({:.2f}x)", v / unit, v / ref); };
    std::printf("%-6s %9.2fM %9.3f  %15s  %15s  %17s  %15s  %15s\n", mode, r.trainable / 1e6, r.states / GB, cell(r.peak, full.peak, GB).c_str(),
                cell(r.steps_rss, full.steps_rss, GB).c_str(), cell(r.process_rss, full.process_rss, GB).c_str(),
                cell(r.wall, full.wall, 1).c_str(), cell(r.cpu, full.cpu, 1).c_str());
    std::fflush(stdout);
    results.push_back(r);
  }
  const double lora = results[1].peak / results[0].peak, qlora = results[2].peak / results[0].peak;
  std::printf("goals (issue 11), peak tensor memory: LoRA %.2fx <= 0.4x %s, QLoRA %.2fx <= 0.25x %s\n", lora, lora <= 0.4 ? "met" : "MISSED",
              qlora, qlora <= 0.25 ? "met" : "MISSED");
  return 0;
}
