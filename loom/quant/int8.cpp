// Row-wise absmax int8 (bitsandbytes' LLM.int8 weight storage, no outliers).
#include "loom/quant/int8.h"

#include <algorithm>
#include <cmath>

#include "loom/quant/common.h"

namespace loom::quant {

Int8Weight quantize_int8(const Tensor& w) {
  const Tensor f = finite_f32(w, "quantize_int8");
  LOOM_CHECK(f.ndim() >= 1, "quantize_int8: a scalar has no rows");
  const int64_t cols = f.size(-1), rows = f.numel() / cols;
  const float* x = f.data<float>();
  Int8Weight q{w.shape(), Tensor::empty({rows * cols}, DType::u8), Tensor::empty({rows})};
  auto* codes = reinterpret_cast<int8_t*>(q.codes.data<uint8_t>());
  float* absmax = q.absmax.data<float>();
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float s = 0.0f;
    for (int64_t c = 0; c < cols; ++c) s = std::max(s, std::fabs(xr[c]));
    absmax[r] = s;
    const float scale = s > 0.0f ? 127.0f / s : 0.0f;
    for (int64_t c = 0; c < cols; ++c) codes[r * cols + c] = int8_t(std::nearbyint(xr[c] * scale));  // ties to even
  }
  return q;
}

Tensor dequantize_int8(const Int8Weight& q) {
  LOOM_CHECK(!q.shape.empty() && q.shape.back() > 0, "dequantize_int8: shape {} has no rows", q.shape);
  const int64_t n = q.numel(), cols = q.shape.back();
  check_quantized(q.codes, DType::u8, n, "dequantize_int8: codes");
  check_quantized(q.absmax, DType::f32, n / cols, "dequantize_int8: absmax");
  const auto* codes = reinterpret_cast<const int8_t*>(q.codes.data<uint8_t>());
  const float* absmax = q.absmax.data<float>();
  Tensor out = Tensor::empty(q.shape);
  float* y = out.data<float>();
  constexpr float inv127 = 7.874015718698502e-3f;  // bitsandbytes' constant, as float32
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const float scaled = float(codes[i]) * absmax[i / cols];
    y[i] = scaled * inv127;
  }
  return out;
}

Int8Weight int8_block(const Int8Weight& q, const Shape& offset, const Shape& box) {
  check_block(q.shape, offset, box, "int8_block");
  const int64_t cols = q.shape[1];
  Int8Weight b{box, Tensor::empty({box[0] * box[1]}, DType::u8), Tensor::empty({box[0]})};
  const uint8_t* codes = q.codes.data<uint8_t>();
  for (int64_t i = 0; i < box[0]; ++i) {
    const int64_t row = offset[0] + i;
    std::copy_n(codes + row * cols + offset[1], box[1], b.codes.data<uint8_t>() + i * box[1]);
    b.absmax.data<float>()[i] = q.absmax.data<float>()[row];
  }
  return b;
}

}  // namespace loom::quant
