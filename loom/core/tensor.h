// Tensor: a cheap value handle to a shared TensorImpl (storage, shape, strides, offset, dtype,
// autograd state). Copying a Tensor ALIASES it — both handles see the same data and grad;
// use clone() for a copy. Views (reshape, transpose, slice, ...) share storage with their base.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "loom/core/device.h"
#include "loom/core/dtype.h"
#include "loom/core/hook.h"
#include "loom/core/shape.h"
#include "loom/core/storage.h"

namespace loom {

namespace autograd {
struct Node;
}

class Tensor;
using GradHook = std::function<void(const Tensor&)>;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Strides strides;     // in elements
  int64_t offset = 0;  // in elements, into storage
  DType dtype = DType::f32;

  // Autograd state. A tensor with requires_grad and no grad_fn is a leaf.
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;                 // accumulated gradient of a leaf
  std::shared_ptr<autograd::Node> grad_fn;          // the op that produced this tensor
  std::weak_ptr<autograd::Node> grad_accumulator;   // leaf's AccumulateGrad node, made on demand
  std::vector<std::pair<uint64_t, GradHook>> post_accumulate_hooks;  // (id, hook), fired after each accumulation into grad
  uint64_t next_hook_id = 0;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // Factories. Contents of empty() are uninitialised.
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32);
  // A tensor whose memory does not exist yet (a model built for deferred initialisation): reading
  // it is an error until its storage is restore()d.
  static Tensor deferred(const Shape& shape, DType dtype = DType::f32);
  // False for a deferred tensor (and a ZeRO-3 parameter while released): its memory is absent.
  bool has_memory() const;
  static Tensor ones(const Shape& shape, DType dtype = DType::f32);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32);
  static Tensor arange(int64_t n, DType dtype = DType::i64);
  // Copies data (converted from double/int64 to dtype) into a new contiguous tensor.
  static Tensor from_vector(const std::vector<double>& data, const Shape& shape, DType dtype = DType::f32);
  static Tensor from_ints(const std::vector<int64_t>& data, const Shape& shape, DType dtype = DType::i64);
  // A tensor over existing memory; the storage keeps `owner` alive.
  static Tensor from_storage(std::shared_ptr<Storage> storage, const Shape& shape, DType dtype, int64_t offset = 0);

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

  const Shape& shape() const { return self().shape; }
  const Strides& strides() const { return self().strides; }
  int64_t offset() const { return self().offset; }
  int64_t ndim() const { return int64_t(self().shape.size()); }
  int64_t size(int64_t dim) const;  // negative dims count from the end
  int64_t numel() const { return numel_of(self().shape); }
  DType dtype() const { return self().dtype; }
  Device device() const { return self().storage ? self().storage->device() : Device::cpu(); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype()); }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return self().storage; }

  // Raw element pointer at this tensor's offset; checks that T matches the dtype.
  template <typename T> T* data() const {
    LOOM_CHECK(dtype_of<T>() == dtype(), "tensor: data<{}>() on a {} tensor", dtype_name(dtype_of<T>()), dtype_name(dtype()));
    return static_cast<T*>(raw_data());
  }
  void* raw_data() const;
  // Values converted to double / int64 in logical (row-major) order, any layout.
  std::vector<double> to_vector() const;
  std::vector<int64_t> to_ints() const;
  double item() const;  // single-element tensors only

  // Autograd.
  bool requires_grad() const { return self().requires_grad; }
  Tensor& set_requires_grad(bool r);  // leaves only
  bool is_leaf() const { return self().grad_fn == nullptr; }
  const std::shared_ptr<autograd::Node>& grad_fn() const { return self().grad_fn; }
  Tensor grad() const { return Tensor(self().grad); }
  void set_grad(const Tensor& g) { self().grad = g.impl_; }
  void zero_grad() { self().grad.reset(); }
  // Runs the backward engine from this tensor; a scalar gets an implicit gradient of 1.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;
  // Same data, no autograd history, requires_grad false.
  Tensor detach() const;
  // hook(leaf) runs after each accumulation into this leaf's grad, for as long as the handle lives.
  HookHandle register_post_accumulate_hook(GradHook hook);

 private:
  // Every accessor goes through self(): using an undefined tensor is an error, not a null dereference.
  TensorImpl& self() const {
    if (!impl_) [[unlikely]] throw_undefined();
    return *impl_;
  }
  [[noreturn]] static void throw_undefined();
  std::shared_ptr<TensorImpl> impl_;
};

}  // namespace loom
