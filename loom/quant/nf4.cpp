// NF4 and the blockwise 8-bit quantiser, following bitsandbytes' CUDA kernels (kQuantizeBlockwise
// with dQuantizeNF4 / dQuantize, kDequantizeBlockwise) rounding for rounding. Compiled with
// -ffp-contract=off (CMakeLists.txt): a product and a sum are two roundings here, as in
// bitsandbytes, never one fused multiply-add unless std::fma says so.
#include "loom/quant/nf4.h"

#include <algorithm>
#include <cmath>

#include "loom/quant/common.h"

namespace loom::quant {

namespace {

// torch.linspace(start, end, steps) in float32 as PyTorch's CPU kernel computes it in its AVX2
// build: step = (end − start) / (steps − 1); element i is start + step·i below steps/2 and
// end − step·(steps − 1 − i) from there on, each a fused multiply-add (GCC contracts them);
// the vectorised loop takes runs of 8 from such a base as base + k·step (product and sum rounded
// apart), two runs at a time while 16 elements remain; the rest element by element.
std::vector<float> torch_linspace(float start, float end, int64_t steps) {
  LOOM_CHECK(steps >= 2, "linspace: {} steps", steps);
  const float step = (end - start) / float(steps - 1);
  const int64_t half = steps / 2;
  auto at = [&](int64_t i) { return i < half ? std::fma(step, float(i), start) : std::fma(-step, float(steps - 1 - i), end); };
  constexpr int64_t lanes = 8;
  std::vector<float> out(size_t(steps), 0.0f);
  int64_t i = 0;
  for (; i + 2 * lanes <= steps; i += 2 * lanes)
    for (int64_t run = i; run < i + 2 * lanes; run += lanes) {
      const float base = at(run);
      for (int64_t k = 0; k < lanes; ++k) out[size_t(run + k)] = base + float(k) * step;
    }
  for (; i < steps; ++i) out[size_t(i)] = at(i);
  return out;
}

// The NF4 code of x: how many of the midpoints between neighbouring NF4 values x exceeds. This
// is bitsandbytes' decision tree (dQuantizeNF4), whose thresholds are these decimal literals (the
// float64 midpoints, printed) read as float literals; four of them (−0.848…, 0.120…, 0.501…,
// 0.861…) lie one float32 step from where the float64 midpoint would round. Strict comparisons: a
// value on a threshold takes the lower code, and NaN takes code 0.
constexpr std::array<float, 15> kNf4Thresholds = {
    -0.8480964004993439f, -0.6106329262256622f, -0.4599952697753906f, -0.33967943489551544f, -0.23460740596055984f,
    -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f, 0.1202552504837513f, 0.2035212516784668f,
    0.2920137718319893f, 0.3893125355243683f, 0.5016634166240692f, 0.6427869200706482f, 0.8614784181118011f};

inline uint8_t nf4_code(float x) {
  int c = 0;
  for (float t : kNf4Thresholds) c += x > t;
  return uint8_t(c);
}

const std::vector<float>& signed_dynamic_map() {
  static const std::vector<float> map = create_dynamic_map(true);
  return map;
}

// Blocks of `blocksize` over x[0, n): absmax[b] = max |x| of the block, codes[i] = the map index
// of x[i] · (1 / absmax). A block of zeros (absmax 0) gets code 0 throughout: in bitsandbytes
// 0 · (1 / 0) is NaN and NaN lands on index 0.
void blockwise8(const float* x, int64_t n, int64_t blocksize, uint8_t* codes, float* absmax) {
  const float* map = signed_dynamic_map().data();
  const int64_t blocks = (n + blocksize - 1) / blocksize;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t lo = b * blocksize, hi = std::min(n, lo + blocksize);
    float s = 0.0f;
    for (int64_t i = lo; i < hi; ++i) s = std::max(s, std::fabs(x[i]));
    absmax[b] = s;
    const float inv = s > 0.0f ? 1.0f / s : 0.0f;
    for (int64_t i = lo; i < hi; ++i) codes[i] = s > 0.0f ? quantize_dynamic(x[i] * inv, map) : 0;
  }
}

}  // namespace

std::vector<float> create_dynamic_map(bool is_signed, int max_exponent_bits, int total_bits) {
  LOOM_CHECK(total_bits >= 2 && total_bits <= 8 && max_exponent_bits >= 1 && max_exponent_bits < total_bits,
             "create_dynamic_map: max_exponent_bits {} and total_bits {} (need 1 <= max_exponent_bits < total_bits <= 8)",
             max_exponent_bits, total_bits);
  const int non_sign_bits = total_bits - 1;  // bitsandbytes counts a sign bit for the unsigned map too
  std::vector<float> data;
  // Means of neighbouring points of linspace(0.1, 1, items + 1), times 10^exponent (and negated).
  auto add = [&](int64_t items, int exponent) {
    const std::vector<float> b = torch_linspace(0.1f, 1.0f, items + 1);
    const float scale = float(std::pow(10.0, exponent));
    for (int64_t k = 0; k < items; ++k) {
      const float v = scale * ((b[size_t(k)] + b[size_t(k + 1)]) / 2.0f);
      data.push_back(v);
      if (is_signed) data.push_back(-v);
    }
  };
  for (int i = 0; i < max_exponent_bits; ++i)
    add(int64_t(1) << (i + non_sign_bits - max_exponent_bits + (is_signed ? 0 : 1)), i - (max_exponent_bits - 1));
  const int64_t additional = (int64_t(1) << (non_sign_bits - max_exponent_bits)) - 1;
  if (additional > 0) add(additional, 0);  // with the loop's last exponent, as bitsandbytes does
  data.push_back(0.0f);
  data.push_back(1.0f);
  LOOM_CHECK(int64_t(data.size()) == (int64_t(1) << total_bits),
             "create_dynamic_map: signed={} max_exponent_bits={} total_bits={} gives {} values, not 2^{} (bitsandbytes asserts too)",
             is_signed, max_exponent_bits, total_bits, data.size(), total_bits);
  data.resize(256, 0.0f);
  std::sort(data.begin(), data.end());
  return data;
}

uint8_t quantize_dynamic(float x, const float* map) {
  // k = how many of map[1], map[3], ..., map[253] lie below x (a prefix: the map ascends); the
  // bracket is map[p − 1] < x <= map[p + 1] around the even index p = 2k.
  int lo = 0, hi = 127;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (x > map[2 * mid + 1])
      lo = mid + 1;
    else
      hi = mid;
  }
  const int p = 2 * lo;
  if (x > map[p]) {  // map[p] < x: p or the one above (map[255] above p = 254); a tie stays at p
    const float midpoint = (map[p + 1] + map[p]) * 0.5f;
    return uint8_t(x > midpoint ? p + 1 : p);
  }
  if (p == 0) return 0;  // also NaN
  const float midpoint = (map[p - 1] + map[p]) * 0.5f;  // x <= map[p]: p or the one below; a tie stays at p
  return uint8_t(x < midpoint ? p - 1 : p);
}

Blockwise8bit quantize_blockwise(const Tensor& x, int64_t blocksize) {
  LOOM_CHECK(blocksize > 0, "quantize_blockwise: block size {}", blocksize);
  const Tensor f = finite_f32(x, "quantize_blockwise");
  const int64_t n = f.numel();
  Blockwise8bit q{x.shape(), blocksize, Tensor::empty({n}, DType::u8), Tensor::empty({(n + blocksize - 1) / blocksize})};
  blockwise8(f.data<float>(), n, blocksize, q.codes.data<uint8_t>(), q.absmax.data<float>());
  return q;
}

Tensor dequantize_blockwise(const Blockwise8bit& q) {
  const int64_t n = numel_of(q.shape);
  LOOM_CHECK(q.blocksize > 0, "dequantize_blockwise: block size {}", q.blocksize);
  check_quantized(q.codes, DType::u8, n, "dequantize_blockwise: codes");
  check_quantized(q.absmax, DType::f32, (n + q.blocksize - 1) / q.blocksize, "dequantize_blockwise: absmax");
  const float* map = signed_dynamic_map().data();
  const uint8_t* c = q.codes.data<uint8_t>();
  const float* a = q.absmax.data<float>();
  Tensor out = Tensor::empty(q.shape);
  float* y = out.data<float>();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) y[i] = map[c[i]] * a[i / q.blocksize];
  return out;
}

size_t Nf4Weight::nbytes() const { return codes.nbytes() + absmax.nbytes() + absmax_scale.nbytes(); }

Nf4Weight quantize_nf4(const Tensor& w) {
  const Tensor f = finite_f32(w, "quantize_nf4");
  const float* x = f.data<float>();
  const int64_t n = f.numel(), blocks = (n + kNf4BlockSize - 1) / kNf4BlockSize;
  Nf4Weight q;
  q.shape = w.shape();
  q.codes = Tensor::empty({(n + 1) / 2}, DType::u8);
  uint8_t* codes = q.codes.data<uint8_t>();
  std::vector<float> absmax(size_t(blocks), 0.0f);
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t lo = b * kNf4BlockSize, hi = std::min(n, lo + kNf4BlockSize);
    float s = 0.0f;
    for (int64_t i = lo; i < hi; ++i) s = std::max(s, std::fabs(x[i]));
    absmax[size_t(b)] = s;
    // As in blockwise8, a block of zeros gets code 0 (NF4 −1, times absmax 0). An odd last
    // element shares its byte with the kernel's zero padding, quantised like a value.
    const float inv = s > 0.0f ? 1.0f / s : 0.0f;
    auto code = [&](float v) { return s > 0.0f ? nf4_code(v * inv) : uint8_t(0); };
    for (int64_t i = lo; i < hi; i += 2) codes[i / 2] = uint8_t(code(x[i]) << 4 | code(i + 1 < hi ? x[i + 1] : 0.0f));
  }
  // Double quantisation: the absmax less their mean, blockwise on the dynamic map. The mean is a
  // float64 sum in order, divided and rounded to float32 once (bitsandbytes: torch's float32 mean).
  double sum = 0.0;
  for (float a : absmax) sum += a;
  q.offset = float(sum / double(blocks));
  for (float& a : absmax) a -= q.offset;
  q.absmax = Tensor::empty({blocks}, DType::u8);
  q.absmax_scale = Tensor::empty({(blocks + kNf4StatsBlockSize - 1) / kNf4StatsBlockSize});
  blockwise8(absmax.data(), blocks, kNf4StatsBlockSize, q.absmax.data<uint8_t>(), q.absmax_scale.data<float>());
  return q;
}

std::vector<float> nf4_block_absmax(const Nf4Weight& q) {
  const int64_t n = q.numel(), blocks = (n + kNf4BlockSize - 1) / kNf4BlockSize;
  check_quantized(q.codes, DType::u8, (n + 1) / 2, "dequantize_nf4: codes");
  check_quantized(q.absmax, DType::u8, blocks, "dequantize_nf4: absmax");
  check_quantized(q.absmax_scale, DType::f32, (blocks + kNf4StatsBlockSize - 1) / kNf4StatsBlockSize, "dequantize_nf4: absmax_scale");
  const float* map = signed_dynamic_map().data();
  const uint8_t* c = q.absmax.data<uint8_t>();
  const float* scale = q.absmax_scale.data<float>();
  std::vector<float> out(size_t(blocks), 0.0f);
  for (int64_t b = 0; b < blocks; ++b) {
    const float scaled = map[c[b]] * scale[b / kNf4StatsBlockSize];  // dequantize_blockwise
    out[size_t(b)] = scaled + q.offset;                              // then `absmax += offset`
  }
  return out;
}

Tensor dequantize_nf4(const Nf4Weight& q) {
  const std::vector<float> absmax = nf4_block_absmax(q);
  const int64_t n = q.numel(), blocks = int64_t(absmax.size());
  const uint8_t* codes = q.codes.data<uint8_t>();
  Tensor out = Tensor::empty(q.shape);
  float* y = out.data<float>();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t b = 0; b < blocks; ++b) {
    std::array<float, 16> value{};
    for (size_t c = 0; c < 16; ++c) value[c] = kNf4Values[c] * absmax[size_t(b)];
    const int64_t lo = b * kNf4BlockSize, hi = std::min(n, lo + kNf4BlockSize);
    for (int64_t i = lo; i + 1 < hi; i += 2) {
      const uint8_t byte = codes[i / 2];
      y[i] = value[byte >> 4];
      y[i + 1] = value[byte & 15];
    }
    if ((hi - lo) % 2) y[hi - 1] = value[codes[(hi - 1) / 2] >> 4];
  }
  return out;
}

namespace {

// The index in the flattened whole of element (i, 0) of block b.
int64_t block_row_start(const Nf4Block& b, int64_t i) { return (b.offset[0] + i) * b.whole[1] + b.offset[1]; }

}  // namespace

Nf4Block nf4_block(const Nf4Weight& q, const Shape& offset, const Shape& box) {
  check_block(q.shape, offset, box, "nf4_block");
  Nf4Block b{q.shape, offset, box, Tensor::zeros({(box[0] * box[1] + 1) / 2}, DType::u8), Tensor()};
  int64_t k = 0;  // the most 64-blocks a row of the box touches
  for (int64_t i = 0; i < box[0]; ++i) {
    const int64_t at = block_row_start(b, i);
    k = std::max(k, (at + box[1] - 1) / kNf4BlockSize - at / kNf4BlockSize + 1);
  }
  const std::vector<float> absmax = nf4_block_absmax(q);
  b.absmax = Tensor::zeros({box[0], k});
  const uint8_t* codes = q.codes.data<uint8_t>();
  uint8_t* mine = b.codes.data<uint8_t>();
  float* a = b.absmax.data<float>();
  for (int64_t i = 0; i < box[0]; ++i) {
    const int64_t at = block_row_start(b, i), first = at / kNf4BlockSize;
    for (int64_t t = 0; t < k && first + t < int64_t(absmax.size()); ++t) a[i * k + t] = absmax[size_t(first + t)];
    for (int64_t j = 0; j < box[1]; ++j) {
      const int64_t f = at + j, e = i * box[1] + j;
      const uint8_t code = f % 2 == 0 ? codes[f / 2] >> 4 : codes[f / 2] & 15;
      mine[e / 2] = uint8_t(mine[e / 2] | (e % 2 == 0 ? code << 4 : code));
    }
  }
  return b;
}

Tensor dequantize_nf4_block(const Nf4Block& b) {
  check_block(b.whole, b.offset, b.box, "dequantize_nf4_block");
  const int64_t rows = b.box[0], cols = b.box[1];
  check_quantized(b.codes, DType::u8, (rows * cols + 1) / 2, "dequantize_nf4_block: codes");
  LOOM_CHECK(b.absmax.ndim() == 2 && b.absmax.size(0) == rows, "dequantize_nf4_block: absmax of shape {} for {} rows", b.absmax.shape(), rows);
  const int64_t k = b.absmax.size(1);
  const uint8_t* codes = b.codes.data<uint8_t>();
  const float* a = b.absmax.data<float>();
  Tensor out = Tensor::empty(b.box);
  float* y = out.data<float>();
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t at = block_row_start(b, i), first = at / kNf4BlockSize;
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t e = i * cols + j;
      const uint8_t code = e % 2 == 0 ? codes[e / 2] >> 4 : codes[e / 2] & 15;
      y[e] = kNf4Values[code] * a[i * k + (at + j) / kNf4BlockSize - first];
    }
  }
  return out;
}

}  // namespace loom::quant
