// Reductions. The one kernel reduces a contiguous (outer, R, inner) view over R; multi-dim
// reductions apply it dim by dim. Each output element is summed by one thread in a fixed
// order, so results do not depend on the thread count.
#include "loom/ops/reduce.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "loom/autograd/function.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/shape.h"

namespace loom::ops {

using autograd::attach;

namespace {

struct Split3 {
  int64_t outer = 1, r = 1, inner = 1;
};
Split3 split_at(const Shape& s, int d) {
  Split3 p;
  for (int i = 0; i < int(s.size()); ++i) (i < d ? p.outer : i == d ? p.r : p.inner) *= s[size_t(i)];
  return p;
}
Shape reduced_shape(const Shape& s, int d, bool keepdim) {
  Shape out = s;
  if (keepdim) out[size_t(d)] = 1;
  else out.erase(out.begin() + d);
  return out;
}

// Sum over one dim, no autograd.
Tensor sum_dim_kernel(const Tensor& x_in, int d, bool keepdim) {
  Tensor x = contiguous(x_in);
  Split3 p = split_at(x.shape(), d);
  Tensor y = Tensor::empty(reduced_shape(x.shape(), d, keepdim), x.dtype());
  dispatch_numeric(x.dtype(), "sum", [&](auto tag) {
    using T = decltype(tag);
    using Acc = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;
    const T* px = x.data<T>();
    T* py = y.data<T>();
#pragma omp parallel for if (x.numel() > 65536)
    for (int64_t o = 0; o < p.outer; ++o) {
      const T* src = px + o * p.r * p.inner;
      if (p.inner == 1) {
        Acc acc = 0;
        for (int64_t r = 0; r < p.r; ++r) acc += src[r];
        py[o] = T(acc);
      } else {
        std::vector<Acc> acc(size_t(p.inner), Acc(0));
        for (int64_t r = 0; r < p.r; ++r)
          for (int64_t i = 0; i < p.inner; ++i) acc[size_t(i)] += src[r * p.inner + i];
        for (int64_t i = 0; i < p.inner; ++i) py[o * p.inner + i] = T(acc[size_t(i)]);
      }
    }
  });
  return y;
}

std::vector<int> sorted_dims(const std::vector<int64_t>& dims, int64_t ndim, const char* op) {
  std::vector<int> ds;
  for (int64_t d : dims) ds.push_back(normalize_dim(d, ndim, op));
  std::sort(ds.begin(), ds.end());
  LOOM_CHECK(std::adjacent_find(ds.begin(), ds.end()) == ds.end(), "{}: repeated dim in {}", op, dims);
  return ds;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  if (is_half(x.dtype())) return cast(sum(cast(x, DType::f32), dims, keepdim), x.dtype());
  std::vector<int> ds = sorted_dims(dims, x.ndim(), "sum");
  Tensor y = x;
  for (auto it = ds.rbegin(); it != ds.rend(); ++it) y = sum_dim_kernel(y, *it, true);
  Shape keep_shape = y.shape();
  if (!keepdim) {
    Shape s;
    for (int i = 0; i < int(x.ndim()); ++i)
      if (!std::binary_search(ds.begin(), ds.end(), i)) s.push_back(x.shape()[size_t(i)]);
    y = reshape(y.detach(), s);
  }
  if (y.impl() == x.impl()) y = y.detach();  // no dims: a fresh handle for the autograd link
  attach(y, "sum", {x}, [keep_shape, xs = x.shape()](const Tensor& g) -> std::vector<Tensor> {
    return {expand(reshape(g, keep_shape), xs)};
  });
  return y;
}

Tensor sum(const Tensor& x) {
  std::vector<int64_t> all(size_t(x.ndim()));
  for (int64_t i = 0; i < x.ndim(); ++i) all[size_t(i)] = i;
  return sum(x, all, false);
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  int64_t count = 1;
  for (int d : sorted_dims(dims, x.ndim(), "mean")) count *= x.shape()[size_t(d)];
  LOOM_CHECK(is_floating(x.dtype()), "mean: needs a floating tensor, got {}", dtype_name(x.dtype()));
  return mul(sum(x, dims, keepdim), 1.0 / double(count));
}

Tensor mean(const Tensor& x) {
  LOOM_CHECK(x.numel() > 0, "mean: empty tensor of shape {}", x.shape());
  return mul(sum(x), 1.0 / double(x.numel()));
}

Tensor argmax(const Tensor& x_in, int64_t dim, bool keepdim) {
  Tensor x = contiguous(is_half(x_in.dtype()) ? cast(x_in, DType::f32) : x_in);
  int d = normalize_dim(dim, x.ndim(), "argmax");
  LOOM_CHECK(x.shape()[size_t(d)] > 0, "argmax: dim {} of shape {} is empty", dim, x.shape());
  Split3 p = split_at(x.shape(), d);
  Tensor y = Tensor::empty(reduced_shape(x.shape(), d, keepdim), DType::i64);
  int64_t* py = y.data<int64_t>();
  dispatch_numeric(x.dtype(), "argmax", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data<T>();
#pragma omp parallel for if (x.numel() > 65536)
    for (int64_t o = 0; o < p.outer; ++o)
      for (int64_t i = 0; i < p.inner; ++i) {
        const T* src = px + o * p.r * p.inner + i;
        int64_t best = 0;
        for (int64_t r = 1; r < p.r; ++r)
          if (src[r * p.inner] > src[best * p.inner] || (std::isnan(double(src[r * p.inner])) && !std::isnan(double(src[best * p.inner]))))
            best = r;
        py[o * p.inner + i] = best;
      }
  });
  return y;
}

Tensor max(const Tensor& x, int64_t dim, bool keepdim) {
  int d = normalize_dim(dim, x.ndim(), "max");
  Tensor y = gather(x, d, argmax(x, d, true));
  return keepdim ? y : squeeze(y, d);
}

Tensor logsumexp(const Tensor& x, int64_t dim, bool keepdim) {
  int d = normalize_dim(dim, x.ndim(), "logsumexp");
  Tensor m = max(x.detach(), d, true);
  // An all -inf slice would give -inf - -inf = nan; shift by 0 there instead.
  m = where(eq(m, Tensor::full({}, -std::numeric_limits<double>::infinity(), m.dtype())), Tensor::zeros({}, m.dtype()), m);
  Tensor y = add(log(sum(exp(sub(x, m)), {d}, true)), m);
  return keepdim ? y : squeeze(y, d);
}

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  int64_t lead = g.ndim() - int64_t(shape.size());
  LOOM_CHECK(lead >= 0, "sum_to: shape {} has more dims than {}", shape, g.shape());
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < g.ndim(); ++i)
    if (i < lead || (shape[size_t(i - lead)] == 1 && g.shape()[size_t(i)] != 1)) dims.push_back(i);
  return reshape(sum(g, dims, true), shape);
}

}  // namespace loom::ops
