// Row-wise absmax int8: the weight storage of bitsandbytes' LLM.int8 without its outlier
// decomposition (int8_vectorwise_quant(threshold=0) and int8_vectorwise_dequant as its torch
// backend computes them): codes = round(x · (127 / absmax of the row)), ties to even;
// x̂ = code · absmax · (1/127 as float32), rounded after each product.
#pragma once

#include "loom/core/tensor.h"

namespace loom::quant {

struct Int8Weight {
  Shape shape;    // of the original weight; a row is its last dimension
  Tensor codes;   // u8 (numel): the int8 codes' bytes (two's complement), row-major
  Tensor absmax;  // f32 (numel / shape.back()): max |x| of each row
  int64_t numel() const { return numel_of(shape); }
  size_t nbytes() const { return codes.nbytes() + absmax.nbytes(); }
};

// w: f32, bf16 or f16 with memory, finite values. A row of zeros gets codes 0 (bitsandbytes:
// 0 · (127 / 0) is NaN, whose conversion to int8 is undefined). bitsandbytes' Int8Params casts
// the weight to float16 first: quantize_int8(cast(w, f16)) is what it stores.
Int8Weight quantize_int8(const Tensor& w);
// f32 of q.shape.
Tensor dequantize_int8(const Int8Weight& q);
// Rows [offset[0], offset[0] + box[0]) × columns [offset[1], offset[1] + box[1]) of a 2-D q: their
// codes and their rows' absmax, which dequantise to exactly that block of dequantize_int8(q) (a
// tensor-parallel rank's part of a QLoRA base).
Int8Weight int8_block(const Int8Weight& q, const Shape& offset, const Shape& box);

}  // namespace loom::quant
