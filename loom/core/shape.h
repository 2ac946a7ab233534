// Shapes and strides (in elements, not bytes) and the helpers every op uses on them:
// dimension normalisation, contiguous strides, NumPy broadcasting.
#pragma once

#include <cstdint>
#include <vector>

namespace loom {

using Shape = std::vector<int64_t>;    // at most kMaxDims entries
using Strides = std::vector<int64_t>;  // element strides, same length as the shape
constexpr int kMaxDims = 8;

int64_t numel_of(const Shape& s);
Strides contiguous_strides(const Shape& s);
// Maps a possibly negative dim into [0, ndim); throws naming op when out of range.
int normalize_dim(int64_t dim, int64_t ndim, const char* op);
// NumPy broadcast of two shapes; throws naming op and both shapes when incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
// Strides that read a tensor of (shape, strides) as if broadcast to `to` (0 on broadcast dims).
Strides broadcast_strides(const Shape& shape, const Strides& strides, const Shape& to);

}  // namespace loom
