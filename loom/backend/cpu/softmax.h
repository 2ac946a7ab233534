// CPU kernels for softmax and log-softmax over the last dim of a (N, C) input (attention
// probabilities, sampling, DPO/GRPO log-probs). Rows are max-subtracted, so any finite input is safe.
// Every kernel may run in place (y == x, dx == dy).
#pragma once

#include <cstdint>

namespace loom::cpu {

// x, y: (N, C).
template <typename T>
void softmax_forward(const T* x, T* y, int64_t N, int64_t C);

// y: (N, C) softmax output from forward; dy, dx: (N, C). dx = y * (dy - sum(dy * y)).
template <typename T>
void softmax_backward(const T* y, const T* dy, T* dx, int64_t N, int64_t C);

// x, y: (N, C). y = x - logsumexp(x).
template <typename T>
void log_softmax_forward(const T* x, T* y, int64_t N, int64_t C);

// y: (N, C) log-softmax output from forward; dy, dx: (N, C). dx = dy - exp(y) * sum(dy).
template <typename T>
void log_softmax_backward(const T* y, const T* dy, T* dx, int64_t N, int64_t C);

}  // namespace loom::cpu
