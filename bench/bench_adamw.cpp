// Bandwidth of the fused AdamW step (cpu::adamw_step) over 32M parameters, against STREAM-like
// loops (copy, triad, and one with AdamW's access pattern) alternated with it step by step on the
// same OpenMP threads (target: AdamW at >= 70% of STREAM bandwidth). Run with OMP_NUM_THREADS=2.
#include "bench/bench_util.h"
#include "loom/backend/cpu/adamw.h"

namespace loom::bench {
namespace {

// 32M floats: 128 MB per buffer, far beyond the last-level cache (124M, the whole GPT-2, moves
// 3.5 GB a step and would only slow the run down).
constexpr int64_t n = int64_t(1) << 25;

// AdamW reads p, g, m, v and writes p, m, v: 28 bytes per parameter. The references are STREAM's
// kernels with its byte counts, copy c = a (16 bytes per element) and triad d = b + s·c (24), whose
// write-allocate reads are not counted, and adamw_pattern: AdamW's seven streams (28 bytes) with
// only multiply-adds, the bandwidth this access pattern itself reaches.
void adamw() {
  add_paired("loom/adamw/32M", [](benchmark::State& st) {
    FreeCacheOnExit free_cache;
    Tensor p = uniform({n}, 1), g = uniform({n}, 2), m = uniform({n}, 3, -0.1f, 0.1f), v = uniform({n}, 4, 0.0f, 0.01f);
    // Separate buffers, none fed back into its own inputs, so values stay put (or bounded).
    Tensor a = uniform({n}, 5), b = uniform({n}, 6), c = uniform({n}, 7), d = uniform({n}, 8);
    Tensor p2 = uniform({n}, 9), m2 = uniform({n}, 10), v2 = uniform({n}, 11);
    float *pp = p.data<float>(), *pm = m.data<float>(), *pv = v.data<float>();
    float *pc = c.data<float>(), *pd = d.data<float>(), *pp2 = p2.data<float>(), *pm2 = m2.data<float>(), *pv2 = v2.data<float>();
    const float *pg = g.data<float>(), *pa = a.data<float>(), *pb = b.data<float>();
    int64_t step = 0;
    const auto adamw_step = [&] {
      cpu::adamw_step(pp, pg, pm, pv, n, 6e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, ++step);
      benchmark::ClobberMemory();
    };
    const auto copy = [&] {
#pragma omp parallel for simd schedule(static)
      for (int64_t i = 0; i < n; ++i) pc[i] = pa[i];
      benchmark::ClobberMemory();
    };
    const auto triad = [&] {
#pragma omp parallel for simd schedule(static)
      for (int64_t i = 0; i < n; ++i) pd[i] = pb[i] + 3.0f * pc[i];
      benchmark::ClobberMemory();
    };
    const auto adamw_pattern = [&] {  // |m2|, |v2| <= 2 and |p2| <= 8 since |g| <= 1
#pragma omp parallel for simd schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        const float mi = 0.5f * pm2[i] + pg[i], vi = 0.5f * pv2[i] + pg[i];
        pm2[i] = mi;
        pv2[i] = vi;
        pp2[i] = 0.5f * pp2[i] + mi * vi;
      }
      benchmark::ClobberMemory();
    };
    const double elems = double(n);
    paired_loop(st, "GB/s", 28.0 * elems, adamw_step,
                {{"stream_copy", 16.0 * elems, copy}, {"stream_triad", 24.0 * elems, triad}, {"adamw_pattern", 28.0 * elems, adamw_pattern}});
  }, "stream_copy,stream_triad,adamw_pattern", 0.7);
}

[[maybe_unused]] const bool registered = [] {
  adamw();
  return true;
}();

}  // namespace
}  // namespace loom::bench
