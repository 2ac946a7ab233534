// Shared pieces of Loom's micro-benchmarks (Google Benchmark): GPT-2 124M shapes, fast random
// inputs, rate counters, Loom-vs-reference paired timing, and the "vs <reference>" labels by which
// bench/summarize.py pairs each Loom case with its reference (in-binary or torch_reference.py).
#pragma once

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "loom/loom.h"

namespace loom::bench {

// GPT-2 124M: channels, heads, head size, vocabulary and its padded row length (llm.c's Vp).
constexpr int64_t C = 768, H = 12, D = 64, V = 50257, Vp = 50304;

struct BatchShape {
  int64_t B, T;
  int64_t rows() const { return B * T; }
  std::string name() const { return fmt::format("B{}_T{}", B, T); }
};
inline const std::vector<BatchShape> batch_shapes = {{4, 64}, {8, 1024}};

// Fills x[0, n) with values uniform in [lo, hi) hashed from (seed, i), in parallel, so that the
// multi-GB logits of the LM head take a fraction of a second to set up.
inline void fill_uniform(float* x, int64_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    uint64_t z = (seed + 1) * 0x9E3779B97F4A7C15ull + uint64_t(i) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 31)) * 0x94D049BB133111EBull;
    z ^= z >> 29;
    x[i] = lo + (hi - lo) * float(z >> 40) * 0x1p-24f;
  }
}

// A new f32 tensor (also used as a plain buffer: 64-byte aligned) filled by fill_uniform.
inline Tensor uniform(const Shape& shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Tensor t = Tensor::empty(shape);
  fill_uniform(t.data<float>(), t.numel(), seed, lo, hi);
  return t;
}

inline Tensor leaf(Tensor t) {
  t.set_requires_grad(true);
  return t;
}

// Rate counters over the measured time (real or manual), from the work of one iteration.
inline void count_flops(benchmark::State& st, double flops) {
  st.counters["GFLOP/s"] = benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}
inline void count_bytes(benchmark::State& st, double bytes) {
  st.counters["GB/s"] = benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

// Declared first in a benchmark body, so it runs after the body's tensors are gone: hands the
// allocator's cached blocks back to the OS, so one case's buffers do not stay resident in the next.
struct FreeCacheOnExit {
  ~FreeCacheOnExit() { CpuAllocator::instance().empty_cache(); }
};

// Runs step once untimed (page faults of fresh buffers, allocator cache), then times it.
template <typename Step>
void timed_loop(benchmark::State& st, Step&& step) {
  step();
  for (auto _ : st) step();
}

// A reference run in the same benchmark as a Loom case (see paired_loop): its name, its work per
// step in the case's unit (FLOP or bytes), and the step.
struct Ref {
  std::string name;
  double work;
  std::function<void()> step;
};

// Times loom_step against refs, step by step: each iteration runs all of them once, starting at
// a rotating position, so Loom and its references see the same load on a shared machine (load
// drifts over seconds; separate benchmarks minutes apart do not compare). Loom's time is the
// iteration time (manual time); counter "<unit>" is Loom's rate and "<ref> <unit>" each
// reference's. unit is "GFLOP/s" or "GB/s", work is per Loom step. Everything runs once untimed first.
inline void paired_loop(benchmark::State& st, const std::string& unit, double work, const std::function<void()>& loom_step,
                        const std::vector<Ref>& refs) {
  using clock = std::chrono::steady_clock;
  const auto run = [](const std::function<void()>& step) {
    const auto start = clock::now();
    step();
    return std::chrono::duration<double>(clock::now() - start).count();
  };
  loom_step();
  for (const Ref& r : refs) r.step();
  static size_t rotation = 0;  // shared by all cases: single-iteration runs also alternate
  std::vector<double> ref_seconds(refs.size(), 0.0);
  for (auto _ : st) {
    const size_t first = rotation++ % (refs.size() + 1);
    for (size_t k = 0; k <= refs.size(); ++k) {
      const size_t i = (first + k) % (refs.size() + 1);
      if (i == refs.size())
        st.SetIterationTime(run(loom_step));
      else
        ref_seconds[i] += run(refs[i].step);
    }
  }
  const double iters = double(st.iterations());
  st.counters[unit] = benchmark::Counter(work / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  for (size_t i = 0; i < refs.size(); ++i) st.counters[refs[i].name + " " + unit] = refs[i].work * iters / 1e9 / ref_seconds[i];
}

// Registers a case; its label tells summarize.py how to read it: `vs` names its references
// (comma-separated: benchmark names of torch_reference.py, or Ref names of a paired_loop) and
// target is the ratio loom/reference of throughputs it should reach (0: none).
template <typename Fn>
benchmark::internal::Benchmark* register_case(const std::string& name, Fn&& fn, const std::string& vs, double target) {
  std::string label = vs.empty() ? "" : target > 0 ? fmt::format("vs {} target {}", vs, target) : "vs " + vs;
  return benchmark::RegisterBenchmark(name.c_str(),
                                      [fn = std::forward<Fn>(fn), label](benchmark::State& st) {
                                        if (!label.empty()) st.SetLabel(label);
                                        fn(st);
                                      })
      ->Unit(benchmark::kMillisecond);
}

// A case timed in wall-clock time (the work runs on OpenMP threads) with timed_loop.
template <typename Fn>
benchmark::internal::Benchmark* add(const std::string& name, Fn&& fn, const std::string& vs = "", double target = 0) {
  return register_case(name, std::forward<Fn>(fn), vs, target)->UseRealTime();
}

// A case timed with paired_loop, against the references it names.
template <typename Fn>
benchmark::internal::Benchmark* add_paired(const std::string& name, Fn&& fn, const std::string& vs, double target) {
  return register_case(name, std::forward<Fn>(fn), vs, target)->UseManualTime();
}

}  // namespace loom::bench
