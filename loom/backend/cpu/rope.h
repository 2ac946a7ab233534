// CPU kernel for rotary position embedding in the Hugging Face layout (LLaMA, Qwen2): each head
// vector rotates its pairs (i, i + D/2) ("rotate_half") by angle pos * theta^(-2i/D).
#pragma once

#include <cstdint>

namespace loom::cpu {

// x, y: (B, T, H, D), D even; y may equal x. pos: (T) positions of every row, (B, T) positions
// of each row when per_row (packed documents), or nullptr for 0..T-1.
// y[i] = x[i] cos - x[i + D/2] sin, y[i + D/2] = x[i + D/2] cos + x[i] sin. The frequencies and
// angles are computed in T the way HF does (fp32 for float), so results match PyTorch to ~1e-6.
// inverse = true rotates by -angle: the backward (a rotation's transpose is its inverse).
template <typename T>
void rope_forward(const T* x, T* y, const int64_t* pos, int64_t B, int64_t T_, int64_t H, int64_t D, double theta,
                  bool inverse, bool per_row = false);

}  // namespace loom::cpu
