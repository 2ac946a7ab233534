// Elementwise math with NumPy broadcasting: arithmetic, unary functions, comparisons, where,
// clamp, dtype casts. Binary ops need both operands of one dtype; bf16/f16 compute in f32 and
// round once. Comparisons return u8 (0/1) tensors without gradient.
#pragma once

#include "loom/core/tensor.h"

namespace loom::ops {

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
Tensor pow(const Tensor& a, double exponent);

Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor abs(const Tensor& x);

Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);

// cond: u8, broadcast against a and b; picks a where cond != 0.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor clamp(const Tensor& x, double lo, double hi);
// Differentiable dtype conversion (the gradient is cast back).
Tensor cast(const Tensor& x, DType dtype);
// A contiguous copy that keeps the autograd link.
Tensor clone(const Tensor& x);

// In place, outside autograd: dst += src (src broadcast to dst), dst *= s, dst = src.
void add_(Tensor& dst, const Tensor& src);
void mul_(Tensor& dst, double s);
void copy_(Tensor& dst, const Tensor& src);
// Throws naming op if x holds a NaN or an infinity.
void check_finite(const Tensor& x, const char* op);

}  // namespace loom::ops

namespace loom {
inline Tensor operator+(const Tensor& a, const Tensor& b) { return ops::add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return ops::sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return ops::mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return ops::div(a, b); }
inline Tensor operator-(const Tensor& a) { return ops::neg(a); }
inline Tensor operator+(const Tensor& a, double s) { return ops::add(a, s); }
inline Tensor operator-(const Tensor& a, double s) { return ops::add(a, -s); }
inline Tensor operator*(const Tensor& a, double s) { return ops::mul(a, s); }
inline Tensor operator/(const Tensor& a, double s) { return ops::mul(a, 1.0 / s); }
inline Tensor operator*(double s, const Tensor& a) { return ops::mul(a, s); }
}  // namespace loom
