// What every quantiser in loom/quant checks of its input and of a quantised tensor it is handed.
#pragma once

#include "loom/core/tensor.h"

namespace loom::quant {

// x (f32, bf16 or f16, with memory, not empty) as a contiguous float32 tensor; an error names
// the first element that is not finite. op names the caller in errors.
Tensor finite_f32(const Tensor& x, const char* op);
// t must be a contiguous tensor of this dtype and element count; what names it in the error.
void check_quantized(const Tensor& t, DType dtype, int64_t numel, const char* what);
// box at offset must be a non-empty 2-D block inside a quantised 2-D weight of shape `whole`.
void check_block(const Shape& whole, const Shape& offset, const Shape& box, const char* op);

}  // namespace loom::quant
