// Reductions over dims: sum, mean, max, argmax, logsumexp; and sum_to, the reduction that
// undoes broadcasting (used by every broadcasting op's backward).
#pragma once

#include "loom/core/tensor.h"

namespace loom::ops {

Tensor sum(const Tensor& x);  // all elements -> shape {}
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
// Max over one dim; the gradient flows to the first maximal element.
Tensor max(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);  // i64, no gradient
Tensor logsumexp(const Tensor& x, int64_t dim, bool keepdim = false);
// Sums g down to `shape`, which g's shape is a broadcast of.
Tensor sum_to(const Tensor& g, const Shape& shape);

}  // namespace loom::ops
