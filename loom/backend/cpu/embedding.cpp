// Embedding CPU kernels: forward copies rows in parallel; backward splits the channels into
// fixed blocks so no two threads ever add into the same dW element (repeated ids are common).
#include "loom/backend/cpu/embedding.h"

#include <algorithm>

namespace loom::cpu {
namespace {

constexpr int64_t kParallelGrain = 32768;  // below this many elements threads cost more than they save
constexpr int64_t kColumnBlock = 64;       // 256 B of float per row: whole cache lines, enough blocks to share

}  // namespace

template <typename T>
void embedding_forward(const int64_t* ids, const T* W, T* y, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static) if (N * C > kParallelGrain)
  for (int64_t i = 0; i < N; ++i) std::copy(W + ids[i] * C, W + (ids[i] + 1) * C, y + i * C);
}

template <typename T>
void embedding_backward(const int64_t* ids, const T* dy, T* dW, int64_t N, int64_t C) {
  const int64_t n_blocks = (C + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static) if (N * C > kParallelGrain)
  for (int64_t blk = 0; blk < n_blocks; ++blk) {
    const int64_t c0 = blk * kColumnBlock;
    const int64_t len = std::min(kColumnBlock, C - c0);
    for (int64_t i = 0; i < N; ++i) {
      const T* src = dy + i * C + c0;     // (len)
      T* dst = dW + ids[i] * C + c0;      // (len)
#pragma omp simd
      for (int64_t j = 0; j < len; ++j) dst[j] += src[j];
    }
  }
}

template void embedding_forward<float>(const int64_t*, const float*, float*, int64_t, int64_t);
template void embedding_forward<double>(const int64_t*, const double*, double*, int64_t, int64_t);
template void embedding_backward<float>(const int64_t*, const float*, float*, int64_t, int64_t);
template void embedding_backward<double>(const int64_t*, const double*, double*, int64_t, int64_t);

}  // namespace loom::cpu
