// CPU kernels for LayerNorm (GPT-2) and RMSNorm (LLaMA) over the last dim of a (N, C) input.
// Forward saves per-row statistics so backward needs no second reduction over x.
#pragma once

#include <cstdint>

namespace loom::cpu {

// x, y: (N, C); w, b: (C) or nullptr (no scale / no shift); mean, rstd: (N) saved for backward.
template <typename T>
void layer_norm_forward(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, int64_t N, int64_t C, T eps);

// dy, x, dx: (N, C); w: (C) or nullptr as in forward; mean, rstd: (N) from forward.
// dx is overwritten; dw, db: (C) are overwritten, or skipped when nullptr.
// dw and db are summed over fixed row chunks in chunk order: bit-identical for any thread count.
template <typename T>
void layer_norm_backward(const T* dy, const T* x, const T* w, const T* mean, const T* rstd, T* dx, T* dw, T* db,
                         int64_t N, int64_t C);

// y = x * rstd * w with rstd = 1/sqrt(mean(x^2) + eps). x, y: (N, C); w: (C); rstd: (N) saved for backward.
template <typename T>
void rms_norm_forward(const T* x, const T* w, T* y, T* rstd, int64_t N, int64_t C, T eps);

// dy, x, dx: (N, C); w: (C); rstd: (N) from forward. dx is overwritten; dw: (C) overwritten, or
// skipped when nullptr; deterministic like layer_norm_backward.
template <typename T>
void rms_norm_backward(const T* dy, const T* x, const T* w, const T* rstd, T* dx, T* dw, int64_t N, int64_t C);

}  // namespace loom::cpu
