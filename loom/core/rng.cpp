// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11) and the
// uniform/normal fills built on it.
#include "loom/core/rng.h"

#include <cmath>

#include "loom/ops/elementwise.h"

namespace loom {

std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u, kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = uint64_t(kM0) * c[0], p1 = uint64_t(kM1) * c[2];
    c = {uint32_t(p1 >> 32) ^ c[1] ^ k[0], uint32_t(p1), uint32_t(p0 >> 32) ^ c[3] ^ k[1], uint32_t(p0)};
    k = {k[0] + kW0, k[1] + kW1};
  }
  return c;
}

namespace {
std::array<uint32_t, 4> block(uint64_t seed, uint64_t index) {
  return philox4x32({uint32_t(index), uint32_t(index >> 32), 0, 0}, {uint32_t(seed), uint32_t(seed >> 32)});
}
double to_unit(uint32_t bits) { return double(bits >> 8) * (1.0 / 16777216.0); }  // [0, 1), 24 bits

template <typename F> Tensor fill(const Shape& shape, DType dtype, F value_at) {
  Tensor t = Tensor::empty(shape, is_half(dtype) ? DType::f32 : dtype);
  dispatch_float(t.dtype(), "rand", [&](auto tag) {
    using T = decltype(tag);
    T* p = t.data<T>();
    const int64_t n = t.numel();
#pragma omp parallel for if (n > 16384)
    for (int64_t i = 0; i < n; ++i) p[i] = T(value_at(uint64_t(i)));
  });
  return is_half(dtype) ? ops::cast(t, dtype) : t;
}
}  // namespace

float uniform_at(uint64_t seed, uint64_t index) { return float(to_unit(block(seed, index)[0])); }

Tensor rand(const Shape& shape, RngKey key, double lo, double hi, DType dtype) {
  return fill(shape, dtype, [&](uint64_t i) { return lo + (hi - lo) * to_unit(block(key.seed, key.offset + i)[0]); });
}

namespace {
// Box-Muller on two independent uniforms from the element's own Philox block.
double normal_at(RngKey key, uint64_t i, double mean, double std) {
  auto r = block(key.seed, key.offset + i);
  double u1 = (double(r[0]) + 1.0) * (1.0 / 4294967296.0);  // (0, 1]: log(u1) is finite
  double u2 = double(r[1]) * (1.0 / 4294967296.0);
  return mean + std * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}
}  // namespace

Tensor randn(const Shape& shape, RngKey key, double mean, double std, DType dtype) {
  return fill(shape, dtype, [&](uint64_t i) { return normal_at(key, i, mean, std); });
}

Tensor randn_block(const Shape& whole, const Shape& offset, const Shape& box, RngKey key, double mean, double std) {
  LOOM_CHECK(whole.size() == box.size() && offset.size() == box.size(), "randn_block: box {} at {} does not fit {}", box, offset, whole);
  for (size_t d = 0; d < box.size(); ++d)
    LOOM_CHECK(offset[d] >= 0 && offset[d] + box[d] <= whole[d], "randn_block: box {} at {} is outside {}", box, offset, whole);
  return fill(box, DType::f32, [&](uint64_t i) {
    uint64_t g = 0, stride = 1;  // i unravelled in box, moved by offset, ravelled in whole
    for (size_t d = box.size(); d-- > 0;) {
      const uint64_t at = i % uint64_t(box[d]) + uint64_t(offset[d]);
      i /= uint64_t(box[d]);
      g += at * stride;
      stride *= uint64_t(whole[d]);
    }
    return normal_at(key, g, mean, std);
  });
}

}  // namespace loom
