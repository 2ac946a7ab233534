// Matrix products through the BLAS: matmul (batched, batch dims broadcast) and linear.
// Transposed views are handed to the BLAS as transposes, never copied.
#pragma once

#include "loom/core/tensor.h"

namespace loom::ops {

// a: (..., M, K), b: (..., K, N) -> (..., M, N); batch dims broadcast (b may be 2-D).
Tensor matmul(const Tensor& a, const Tensor& b);
// x: (..., in), weight: (out, in), bias: (out) or undefined -> (..., out). y = x @ weightᵀ + bias.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

}  // namespace loom::ops
