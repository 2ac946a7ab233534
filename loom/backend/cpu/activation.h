// CPU kernels for the MLP activations: GELU (tanh approximation, GPT-2's "gelu_new"), SiLU, and
// SwiGLU (LLaMA's silu(gate) * up). Elementwise over n contiguous values; in place is allowed.
#pragma once

#include <cstdint>

namespace loom::cpu {

// x, y: (n). y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
template <typename T>
void gelu_forward(const T* x, T* y, int64_t n);

// x, dy, dx: (n). dx = dy * gelu'(x).
template <typename T>
void gelu_backward(const T* x, const T* dy, T* dx, int64_t n);

// x, y: (n). y = x * sigmoid(x).
template <typename T>
void silu_forward(const T* x, T* y, int64_t n);

// x, dy, dx: (n). dx = dy * silu'(x).
template <typename T>
void silu_backward(const T* x, const T* dy, T* dx, int64_t n);

// gate, up, y: (n). y = silu(gate) * up.
template <typename T>
void swiglu_forward(const T* gate, const T* up, T* y, int64_t n);

// gate, up, dy, dgate, dup: (n). dgate = dy * up * silu'(gate); dup = dy * silu(gate).
template <typename T>
void swiglu_backward(const T* gate, const T* up, const T* dy, T* dgate, T* dup, int64_t n);

}  // namespace loom::cpu
