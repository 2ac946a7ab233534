// Shape ops. Views build a new TensorImpl over the same storage; their backward maps the
// gradient back through the inverse view. cat/index_select/gather copy.
#include "loom/ops/shape.h"

#include <cstring>
#include <numeric>

#include "loom/autograd/function.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/reduce.h"

namespace loom::ops {

using autograd::attach;

namespace {

Tensor make_view(const Tensor& x, Shape shape, Strides strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = x.storage();
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = x.dtype();
  return Tensor(std::move(impl));
}

Shape infer_shape(const Tensor& x, Shape shape) {
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      LOOM_CHECK(infer < 0, "reshape: more than one -1 in {}", shape);
      infer = int64_t(i);
    } else {
      LOOM_CHECK(shape[i] >= 0, "reshape: bad size {} in {}", shape[i], shape);
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    LOOM_CHECK(known > 0 && x.numel() % known == 0, "reshape: cannot reshape {} into {}", x.shape(), shape);
    shape[size_t(infer)] = x.numel() / known;
  }
  LOOM_CHECK(numel_of(shape) == x.numel(), "reshape: cannot reshape {} ({} elements) into {}", x.shape(), x.numel(), shape);
  LOOM_CHECK(shape.size() <= size_t(kMaxDims), "reshape: {} dims exceed the limit of {}", shape.size(), kMaxDims);
  return shape;
}

// Gradient of a slice: zeros of the input's shape with g copied into the sliced region.
Tensor unslice(const Tensor& g, const Shape& in_shape, int d, int64_t start, int64_t end, int64_t step) {
  Tensor dx = Tensor::zeros(in_shape, g.dtype());
  Tensor region = slice(dx, d, start, end, step);
  copy_(region, g);
  return dx;
}

int64_t checked_index(int64_t v, int64_t size, const char* op, int64_t pos) {
  LOOM_CHECK(v >= 0 && v < size, "{}: index {} at position {} is out of range [0, {})", op, v, pos, size);
  return v;
}

}  // namespace

Tensor reshape(const Tensor& x, Shape shape) {
  shape = infer_shape(x, std::move(shape));
  Tensor base = contiguous(x);
  Tensor y = make_view(base, shape, contiguous_strides(shape), base.offset());
  attach(y, "reshape", {base}, [xs = x.shape()](const Tensor& g) -> std::vector<Tensor> { return {reshape(g, xs)}; });
  return y;
}

Tensor flatten(const Tensor& x) { return reshape(x, {x.numel()}); }

Tensor permute(const Tensor& x, const std::vector<int64_t>& order) {
  LOOM_CHECK(int64_t(order.size()) == x.ndim(), "permute: order {} for a {}-d tensor", order, x.ndim());
  Shape s(order.size());
  Strides st(order.size());
  std::vector<int64_t> inverse(order.size(), -1);
  for (size_t i = 0; i < order.size(); ++i) {
    int d = normalize_dim(order[i], x.ndim(), "permute");
    LOOM_CHECK(inverse[size_t(d)] < 0, "permute: repeated dim in {}", order);
    inverse[size_t(d)] = int64_t(i);
    s[i] = x.shape()[size_t(d)];
    st[i] = x.strides()[size_t(d)];
  }
  Tensor y = make_view(x, s, st, x.offset());
  attach(y, "permute", {x}, [inverse](const Tensor& g) -> std::vector<Tensor> { return {permute(g, inverse)}; });
  return y;
}

Tensor transpose(const Tensor& x, int64_t d0, int64_t d1) {
  std::vector<int64_t> order(size_t(x.ndim()));
  std::iota(order.begin(), order.end(), 0);
  std::swap(order[size_t(normalize_dim(d0, x.ndim(), "transpose"))], order[size_t(normalize_dim(d1, x.ndim(), "transpose"))]);
  return permute(x, order);
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  int d = normalize_dim(dim, x.ndim(), "slice");
  int64_t n = x.shape()[size_t(d)];
  LOOM_CHECK(step >= 1, "slice: step {} must be positive", step);
  if (start < 0) start += n;
  if (end < 0) end += n;
  end = std::min(end, n);
  LOOM_CHECK(start >= 0 && start <= end, "slice: range [{}, {}) is invalid for dim {} of size {}", start, end, dim, n);
  Shape s = x.shape();
  Strides st = x.strides();
  s[size_t(d)] = (end - start + step - 1) / step;
  st[size_t(d)] *= step;
  Tensor y = make_view(x, s, st, x.offset() + start * x.strides()[size_t(d)]);
  attach(y, "slice", {x}, [xs = x.shape(), d, start, end, step](const Tensor& g) -> std::vector<Tensor> {
    return {unslice(g, xs, d, start, end, step)};
  });
  return y;
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  int d = normalize_dim(dim, x.ndim(), "narrow");
  LOOM_CHECK(start >= 0 && length >= 0 && start + length <= x.shape()[size_t(d)],
             "narrow: [{}, {}) is out of range for dim {} of size {}", start, start + length, dim, x.shape()[size_t(d)]);
  return slice(x, d, start, start + length);
}

Tensor expand(const Tensor& x, const Shape& shape) {
  LOOM_CHECK(shape.size() >= size_t(x.ndim()), "expand: cannot expand {} to fewer dims {}", x.shape(), shape);
  LOOM_CHECK(broadcast_shapes(x.shape(), shape, "expand") == shape, "expand: cannot expand {} to {}", x.shape(), shape);
  Tensor y = make_view(x, shape, broadcast_strides(x.shape(), x.strides(), shape), x.offset());
  attach(y, "expand", {x}, [xs = x.shape()](const Tensor& g) -> std::vector<Tensor> { return {sum_to(g, xs)}; });
  return y;
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  int d = normalize_dim(dim, x.ndim(), "squeeze");
  LOOM_CHECK(x.shape()[size_t(d)] == 1, "squeeze: dim {} of shape {} is not 1", dim, x.shape());
  Shape s = x.shape();
  Strides st = x.strides();
  s.erase(s.begin() + d);
  st.erase(st.begin() + d);
  Tensor y = make_view(x, s, st, x.offset());
  attach(y, "squeeze", {x}, [d](const Tensor& g) -> std::vector<Tensor> { return {unsqueeze(g, d)}; });
  return y;
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  int d = normalize_dim(dim, x.ndim() + 1, "unsqueeze");
  LOOM_CHECK(x.ndim() < kMaxDims, "unsqueeze: a {}-d tensor cannot gain a dim", x.ndim());
  Shape s = x.shape();
  Strides st = x.strides();
  int64_t inner = size_t(d) < st.size() ? st[size_t(d)] * s[size_t(d)] : 1;
  s.insert(s.begin() + d, 1);
  st.insert(st.begin() + d, inner);
  Tensor y = make_view(x, s, st, x.offset());
  attach(y, "unsqueeze", {x}, [d](const Tensor& g) -> std::vector<Tensor> { return {squeeze(g, d)}; });
  return y;
}

Tensor contiguous(const Tensor& x) { return x.is_contiguous() ? x : clone(x); }

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  LOOM_CHECK(!xs.empty(), "cat: no tensors");
  int d = normalize_dim(dim, xs[0].ndim(), "cat");
  Shape s = xs[0].shape();
  s[size_t(d)] = 0;
  for (const Tensor& x : xs) {
    Shape a = x.shape(), b = xs[0].shape();
    LOOM_CHECK(a.size() == b.size() && x.dtype() == xs[0].dtype(), "cat: tensor of shape {} ({}) does not match {} ({})", a,
               dtype_name(x.dtype()), b, dtype_name(xs[0].dtype()));
    a[size_t(d)] = b[size_t(d)] = 0;
    LOOM_CHECK(a == b, "cat: shape {} does not match {} outside dim {}", x.shape(), xs[0].shape(), dim);
    s[size_t(d)] += x.shape()[size_t(d)];
  }
  Tensor y = Tensor::empty(s, xs[0].dtype());
  std::vector<int64_t> sizes;
  int64_t off = 0;
  for (const Tensor& x : xs) {
    int64_t n = x.shape()[size_t(d)];
    Tensor region = narrow(y, d, off, n);
    copy_(region, x);
    sizes.push_back(n);
    off += n;
  }
  attach(y, "cat", xs, [sizes, d](const Tensor& g) { return split(g, sizes, d); });
  return y;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  int d = normalize_dim(dim, x.ndim(), "split");
  int64_t total = std::accumulate(sizes.begin(), sizes.end(), int64_t(0));
  LOOM_CHECK(total == x.shape()[size_t(d)], "split: sizes {} do not add up to dim {} of shape {}", sizes, dim, x.shape());
  std::vector<Tensor> out;
  int64_t off = 0;
  for (int64_t n : sizes) {
    out.push_back(slice(x, d, off, off + n));
    off += n;
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
  LOOM_CHECK(!xs.empty(), "stack: no tensors");
  int d = normalize_dim(dim, xs[0].ndim() + 1, "stack");
  std::vector<Tensor> us;
  for (const Tensor& x : xs) {
    LOOM_CHECK(x.shape() == xs[0].shape(), "stack: shape {} does not match {}", x.shape(), xs[0].shape());
    us.push_back(unsqueeze(x, d));
  }
  return cat(us, d);
}

Tensor index_select(const Tensor& x_in, int64_t dim, const Tensor& idx_in) {
  LOOM_CHECK(idx_in.ndim() == 1 && !is_floating(idx_in.dtype()), "index_select: index must be a 1-d integer tensor, got {} {}",
             dtype_name(idx_in.dtype()), idx_in.shape());
  int d = normalize_dim(dim, x_in.ndim(), "index_select");
  Tensor x = contiguous(x_in);
  std::vector<int64_t> idx = idx_in.to_ints();
  int64_t outer = 1, r = x.shape()[size_t(d)], inner = 1;
  for (int i = 0; i < d; ++i) outer *= x.shape()[size_t(i)];
  for (int64_t i = d + 1; i < x.ndim(); ++i) inner *= x.shape()[size_t(i)];
  for (size_t j = 0; j < idx.size(); ++j) checked_index(idx[j], r, "index_select", int64_t(j));
  Shape s = x.shape();
  s[size_t(d)] = int64_t(idx.size());
  Tensor y = Tensor::empty(s, x.dtype());
  const size_t row = size_t(inner) * dtype_size(x.dtype());
  const char* px = static_cast<const char*>(x.raw_data());
  char* py = static_cast<char*>(y.raw_data());
  const int64_t n = int64_t(idx.size());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < n; ++j) std::memcpy(py + size_t(o * n + j) * row, px + size_t(o * r + idx[size_t(j)]) * row, row);
  attach(y, "index_select", {x}, [idx, xs = x.shape(), d, outer, r, inner](const Tensor& g_in) -> std::vector<Tensor> {
    Tensor g = contiguous(is_half(g_in.dtype()) ? cast(g_in, DType::f32) : g_in);  // accumulate half grads in f32
    Tensor dx = Tensor::zeros(xs, g.dtype());
    dispatch_float(g.dtype(), "index_select backward", [&](auto tag) {
      using T = decltype(tag);
      const T* pg = g.data<T>();
      T* pd = dx.data<T>();
      const int64_t n = int64_t(idx.size());
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t j = 0; j < n; ++j)
          for (int64_t i = 0; i < inner; ++i) pd[(o * r + idx[size_t(j)]) * inner + i] += pg[(o * n + j) * inner + i];
    });
    return {cast(dx, g_in.dtype())};
  });
  return y;
}

Tensor gather(const Tensor& x_in, int64_t dim, const Tensor& idx_in) {
  LOOM_CHECK(!is_floating(idx_in.dtype()), "gather: index must be an integer tensor, got {}", dtype_name(idx_in.dtype()));
  int d = normalize_dim(dim, x_in.ndim(), "gather");
  LOOM_CHECK(idx_in.ndim() == x_in.ndim(), "gather: index of shape {} must have the rank of input {}", idx_in.shape(), x_in.shape());
  for (int64_t i = 0; i < x_in.ndim(); ++i)
    LOOM_CHECK(i == d || idx_in.shape()[size_t(i)] == x_in.shape()[size_t(i)],
               "gather: index shape {} must match input shape {} outside dim {}", idx_in.shape(), x_in.shape(), dim);
  Tensor x = contiguous(x_in);
  std::vector<int64_t> idx = idx_in.to_ints();  // logical order = contiguous (outer, n, inner)
  int64_t outer = 1, r = x.shape()[size_t(d)], inner = 1, n = idx_in.shape()[size_t(d)];
  for (int i = 0; i < d; ++i) outer *= x.shape()[size_t(i)];
  for (int64_t i = d + 1; i < x.ndim(); ++i) inner *= x.shape()[size_t(i)];
  for (size_t j = 0; j < idx.size(); ++j) checked_index(idx[j], r, "gather", int64_t(j));
  Tensor y = Tensor::empty(idx_in.shape(), x.dtype());
  const size_t es = dtype_size(x.dtype());
  const char* px = static_cast<const char*>(x.raw_data());
  char* py = static_cast<char*>(y.raw_data());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < inner; ++i) {
        int64_t k = (o * n + j) * inner + i;
        std::memcpy(py + size_t(k) * es, px + size_t((o * r + idx[size_t(k)]) * inner + i) * es, es);
      }
  attach(y, "gather", {x}, [idx, xs = x.shape(), outer, r, inner, n](const Tensor& g_in) -> std::vector<Tensor> {
    Tensor g = contiguous(is_half(g_in.dtype()) ? cast(g_in, DType::f32) : g_in);  // accumulate half grads in f32
    Tensor dx = Tensor::zeros(xs, g.dtype());
    dispatch_float(g.dtype(), "gather backward", [&](auto tag) {
      using T = decltype(tag);
      const T* pg = g.data<T>();
      T* pd = dx.data<T>();
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t j = 0; j < n; ++j)
          for (int64_t i = 0; i < inner; ++i) {
            int64_t k = (o * n + j) * inner + i;
            pd[(o * r + idx[size_t(k)]) * inner + i] += pg[k];
          }
    });
    return {cast(dx, g_in.dtype())};
  });
  return y;
}

}  // namespace loom::ops
