// CPU kernels for token (and learned position) embedding lookup: y[i] = W[ids[i]] and its
// scatter-add backward into the table gradient.
#pragma once

#include <cstdint>

namespace loom::cpu {

// ids: (N), already range-checked against V by the caller; W: (V, C); y: (N, C).
template <typename T>
void embedding_forward(const int64_t* ids, const T* W, T* y, int64_t N, int64_t C);

// ids: (N); dy: (N, C); dW: (V, C) is ACCUMULATED into (dW[ids[i]] += dy[i]; the caller zeroes it).
// Race-free and deterministic for any thread count: threads own column blocks and each walks all
// rows in order, so repeated ids are summed in row order.
template <typename T>
void embedding_backward(const int64_t* ids, const T* dy, T* dW, int64_t N, int64_t C);

}  // namespace loom::cpu
