// Counter-based random numbers (Philox4x32-10). The value of element i of a draw depends
// only on (seed, offset + i), never on the thread count or the order of evaluation, so random
// init and dropout masks can be recomputed exactly (checkpointing, other ranks, resume).
#pragma once

#include <array>
#include <cstdint>

#include "loom/core/tensor.h"

namespace loom {

// Where a draw starts in the stream of `seed`. A draw of n values uses offsets [offset, offset+n).
struct RngKey {
  uint64_t seed = 0;
  uint64_t offset = 0;
};

std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);
// Uniform in [0, 1) (float, 24 random bits) for stream position `index`.
float uniform_at(uint64_t seed, uint64_t index);

// Hands out consecutive, non-overlapping keys of one seed; its state is (seed, offset).
class Generator {
 public:
  explicit Generator(uint64_t seed = 0, uint64_t offset = 0) : seed_(seed), offset_(offset) {}
  RngKey next(uint64_t n) {
    RngKey k{seed_, offset_};
    offset_ += n;
    return k;
  }
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }

 private:
  uint64_t seed_, offset_;
};

// New tensors of f32/f64 random values drawn at key (other dtypes: drawn in f32, then cast).
Tensor rand(const Shape& shape, RngKey key, double lo = 0.0, double hi = 1.0, DType dtype = DType::f32);
Tensor randn(const Shape& shape, RngKey key, double mean = 0.0, double std = 1.0, DType dtype = DType::f32);
// The block `box` at `offset` of the draw randn(whole, key, ...) would give, without drawing the
// rest: element g of the whole (row-major) is drawn at key.offset + g (f32).
Tensor randn_block(const Shape& whole, const Shape& offset, const Shape& box, RngKey key, double mean, double std);

}  // namespace loom
