// NF4 (loom/quant) on a 4096×4096 weight, a LLaMA-7B projection: dequantising writes 64 MB of
// float32 from 8 MB of codes, so its reference is the bandwidth of writing those 64 MB (a fill,
// alternated with it step by step on the same OpenMP threads); quantising reads the 64 MB once.
// Run with OMP_NUM_THREADS=2.
#include "bench/bench_util.h"
#include "loom/quant/nf4.h"

namespace loom::bench {
namespace {

constexpr int64_t rows = 4096, cols = 4096, n = rows * cols;

void nf4() {
  add_paired("loom/nf4_dequantize/4096x4096", [](benchmark::State& st) {
    FreeCacheOnExit free_cache;
    const quant::Nf4Weight q = quant::quantize_nf4(uniform({rows, cols}, 1, -0.05f, 0.05f));
    Tensor fill = Tensor::empty({n});
    float* pf = fill.data<float>();
    const auto dequantize = [&] {
      Tensor w = quant::dequantize_nf4(q);
      benchmark::DoNotOptimize(w.data<float>());
      benchmark::ClobberMemory();
    };
    const auto write = [&] {
#pragma omp parallel for simd schedule(static)
      for (int64_t i = 0; i < n; ++i) pf[i] = 0.5f;
      benchmark::ClobberMemory();
    };
    // Bytes moved: the f32 output, the codes and the quantised absmax.
    paired_loop(st, "GB/s", 4.5 * double(n) + double(n / 64), dequantize, {{"stream_write", 4.0 * double(n), write}});
  }, "stream_write", 0.5);
  add("loom/nf4_quantize/4096x4096", [](benchmark::State& st) {
    FreeCacheOnExit free_cache;
    const Tensor w = uniform({rows, cols}, 2, -0.05f, 0.05f);
    timed_loop(st, [&] { benchmark::DoNotOptimize(quant::quantize_nf4(w).codes.data<uint8_t>()); });
    count_bytes(st, 4.5 * double(n));
  });
}

[[maybe_unused]] const bool registered = [] {
  nf4();
  return true;
}();

}  // namespace
}  // namespace loom::bench
