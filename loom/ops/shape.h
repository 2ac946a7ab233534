// Views (reshape, transpose, permute, slice, expand, squeeze, unsqueeze) that share storage,
// contiguous(), and the ops that build or pick from tensors: cat, split, stack,
// index_select, gather. Negative dims count from the end.
#pragma once

#include "loom/core/tensor.h"

namespace loom::ops {

// One size may be -1. A non-contiguous input is copied first (the result is then not a view).
Tensor reshape(const Tensor& x, Shape shape);
Tensor flatten(const Tensor& x);  // -> (numel)
Tensor transpose(const Tensor& x, int64_t d0, int64_t d1);
Tensor permute(const Tensor& x, const std::vector<int64_t>& order);
// Elements start, start+step, ... < end along dim (end clamped to the size).
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
// Size-1 dims (or missing leading dims) become the target size with stride 0.
Tensor expand(const Tensor& x, const Shape& shape);
Tensor squeeze(const Tensor& x, int64_t dim);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor contiguous(const Tensor& x);  // x itself when already contiguous

Tensor cat(const std::vector<Tensor>& xs, int64_t dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);  // views
Tensor stack(const std::vector<Tensor>& xs, int64_t dim);
// idx: (n) integer; picks slices along dim. Gradient scatter-adds back.
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& idx);
// out[i..][j][k..] = x[i..][idx[i..][j][k..]][k..] along dim; idx has x's rank.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& idx);

}  // namespace loom::ops
