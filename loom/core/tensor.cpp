// Tensor factories, element access and the autograd entry points on the handle.
#include "loom/core/tensor.h"

#include "loom/autograd/engine.h"
#include "loom/backend/cpu/loops.h"
#include "loom/core/error.h"

namespace loom {

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  LOOM_CHECK(shape.size() <= size_t(kMaxDims), "tensor: {} dims exceed the limit of {}", shape.size(), kMaxDims);
  for (int64_t d : shape) LOOM_CHECK(d >= 0, "tensor: negative size in shape {}", shape);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = Storage::allocate(size_t(numel_of(shape)) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

bool Tensor::has_memory() const { return self().storage->resident(); }

Tensor Tensor::deferred(const Shape& shape, DType dtype) {
  Tensor t = empty({0}, dtype);
  t.impl()->storage = Storage::deferred(size_t(numel_of(shape)) * dtype_size(dtype));
  t.impl()->shape = shape;
  t.impl()->strides = contiguous_strides(shape);
  return t;
}

Tensor Tensor::from_storage(std::shared_ptr<Storage> storage, const Shape& shape, DType dtype, int64_t offset) {
  LOOM_CHECK(size_t(offset + numel_of(shape)) * dtype_size(dtype) <= storage->nbytes(),
             "tensor: shape {} at offset {} does not fit a storage of {} bytes", shape, offset, storage->nbytes());
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(storage);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->offset = offset;
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

namespace {
template <typename T> T from_double(double v) {
  if constexpr (std::is_same_v<T, bf16>) return f32_to_bf16(float(v));
  else if constexpr (std::is_same_v<T, f16>) return f32_to_f16(float(v));
  else return T(v);
}
template <typename T> double to_double(T v) {
  if constexpr (std::is_same_v<T, bf16>) return bf16_to_f32(v);
  else if constexpr (std::is_same_v<T, f16>) return f16_to_f32(v);
  else return double(v);
}
}  // namespace

Tensor Tensor::full(const Shape& shape, double value, DType dtype) {
  Tensor t = empty(shape, dtype);
  dispatch_all(dtype, [&](auto tag) {
    using T = decltype(tag);
    T v = from_double<T>(value);
    T* p = t.data<T>();
    int64_t n = t.numel();
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; ++i) p[i] = v;
  });
  return t;
}
Tensor Tensor::zeros(const Shape& shape, DType dtype) { return full(shape, 0.0, dtype); }
Tensor Tensor::ones(const Shape& shape, DType dtype) { return full(shape, 1.0, dtype); }

Tensor Tensor::arange(int64_t n, DType dtype) {
  std::vector<int64_t> v(size_t(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = i;
  return from_ints(v, {n}, dtype);
}

Tensor Tensor::from_vector(const std::vector<double>& data, const Shape& shape, DType dtype) {
  LOOM_CHECK(int64_t(data.size()) == numel_of(shape), "tensor: {} values do not fill shape {}", data.size(), shape);
  Tensor t = empty(shape, dtype);
  dispatch_all(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* p = t.data<T>();
    for (size_t i = 0; i < data.size(); ++i) p[i] = from_double<T>(data[i]);
  });
  return t;
}

Tensor Tensor::from_ints(const std::vector<int64_t>& data, const Shape& shape, DType dtype) {
  LOOM_CHECK(int64_t(data.size()) == numel_of(shape), "tensor: {} values do not fill shape {}", data.size(), shape);
  Tensor t = empty(shape, dtype);
  dispatch_all(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* p = t.data<T>();
    for (size_t i = 0; i < data.size(); ++i) {
      if constexpr (std::is_same_v<T, int64_t>) p[i] = data[i];  // exact beyond 2^53
      else p[i] = from_double<T>(double(data[i]));
    }
  });
  return t;
}

int64_t Tensor::size(int64_t dim) const { return shape()[size_t(normalize_dim(dim, ndim(), "size"))]; }

bool Tensor::is_contiguous() const {
  int64_t expect = 1;
  for (size_t i = shape().size(); i-- > 0;) {
    if (shape()[i] != 1 && strides()[i] != expect) return false;
    expect *= shape()[i];
  }
  return true;
}

void Tensor::throw_undefined() { throw Error("tensor: use of an undefined tensor"); }

void* Tensor::raw_data() const {
  auto* base = static_cast<char*>(self().storage->data());
  LOOM_CHECK(base || self().storage->nbytes() == 0, "tensor: its memory was released (a ZeRO-3 parameter used outside its block?)");
  return base ? base + self().offset * int64_t(dtype_size(dtype())) : nullptr;
}

std::vector<double> Tensor::to_vector() const {
  std::vector<double> out(static_cast<size_t>(numel()));
  dispatch_all(dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* src = static_cast<const T*>(raw_data());
    cpu::for_each_run<2>(shape(), {strides(), contiguous_strides(shape())},
                         [&](auto off, int64_t n, auto step) {
                           for (int64_t i = 0; i < n; ++i)
                             out[size_t(off[1] + i * step[1])] = to_double(src[off[0] + i * step[0]]);
                         });
  });
  return out;
}

std::vector<int64_t> Tensor::to_ints() const {
  if (dtype() == DType::i64 && is_contiguous()) {
    const int64_t* p = data<int64_t>();
    return std::vector<int64_t>(p, p + numel());
  }
  std::vector<double> d = to_vector();
  return std::vector<int64_t>(d.begin(), d.end());
}

double Tensor::item() const {
  LOOM_CHECK(numel() == 1, "tensor: item() on a tensor of shape {}", shape());
  return to_vector()[0];
}

Tensor& Tensor::set_requires_grad(bool r) {
  LOOM_CHECK(is_leaf(), "tensor: set_requires_grad on a non-leaf tensor");
  LOOM_CHECK(!r || is_floating(dtype()), "tensor: only floating tensors can require grad (got {})", dtype_name(dtype()));
  self().requires_grad = r;
  return *this;
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = self().storage;
  impl->shape = self().shape;
  impl->strides = self().strides;
  impl->offset = self().offset;
  impl->dtype = self().dtype;
  return Tensor(std::move(impl));
}

HookHandle Tensor::register_post_accumulate_hook(GradHook hook) {
  const uint64_t id = self().next_hook_id++;
  self().post_accumulate_hooks.emplace_back(id, std::move(hook));
  return HookHandle([weak = std::weak_ptr<TensorImpl>(impl_), id] {
    if (auto impl = weak.lock()) std::erase_if(impl->post_accumulate_hooks, [id](const auto& h) { return h.first == id; });
  });
}

void Tensor::backward(const Tensor& grad, bool retain_graph) const { autograd::backward(*this, grad, retain_graph); }

}  // namespace loom
