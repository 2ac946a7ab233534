// The autograd graph: one Node per differentiable op application, with edges to the nodes
// that produced its inputs. Leaves get an AccumulateGrad node that adds into .grad and fires
// the leaf's post-accumulate hooks (DDP buckets listen there).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "loom/core/tensor.h"

namespace loom::autograd {

// Gradient of an op's inputs given the gradient of its output; one entry per input
// (undefined where the input needs no gradient).
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_out)>;
// For an op with one input whose gradient is sparse (an embedding's): adds it straight into
// `into`, a gradient for that input that is already there, instead of materialising it; returns
// false where it cannot (the op's BackwardFn then runs).
using AccumulateFn = std::function<bool(const Tensor& grad_out, Tensor& into)>;

struct Node {
  Node();
  virtual ~Node() = default;
  // grad_out is handed over: a node may keep its buffer when no one else holds it.
  virtual std::vector<Tensor> apply(Tensor grad_out) = 0;
  virtual void release() {}  // drops saved tensors once backward has run
  // Adds the gradient of input 0 into `into` (owned by the engine) and returns true, or false.
  virtual bool accumulate_into(const Tensor&, Tensor&) { return false; }
  virtual const char* name() const = 0;

  // Adds an input: the edge its gradient flows into (null where it needs none) and the shape and
  // dtype that gradient must have, which the engine checks.
  void add_input(const Tensor& t);

  struct InputMeta {
    Shape shape;
    DType dtype;
  };
  std::vector<std::shared_ptr<Node>> next;  // per input; null where the input needs no grad
  std::vector<InputMeta> input_meta;        // per input
  uint64_t seq;                             // creation order; later nodes run first
};

struct FunctionNode final : Node {
  FunctionNode(const char* op, BackwardFn fn, AccumulateFn accumulate = nullptr)
      : op_(op), fn_(std::move(fn)), accumulate_(std::move(accumulate)) {}
  std::vector<Tensor> apply(Tensor grad_out) override;
  bool accumulate_into(const Tensor& grad_out, Tensor& into) override { return accumulate_ && accumulate_(grad_out, into); }
  void release() override {
    fn_ = nullptr;
    accumulate_ = nullptr;
  }
  const char* name() const override { return op_; }

 private:
  const char* op_;
  BackwardFn fn_;
  AccumulateFn accumulate_;
};

// Adds into the leaf's grad, then fires its post-accumulate hooks. It runs once per backward pass
// that reaches the leaf, also when no gradient arrived (every path returned none): the hooks
// learn that the leaf's gradient for this pass is final either way.
struct AccumulateGrad final : Node {
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf) : leaf_(std::move(leaf)) {}
  std::vector<Tensor> apply(Tensor grad_out) override;
  const char* name() const override { return "AccumulateGrad"; }
  const std::shared_ptr<TensorImpl>& leaf() const { return leaf_; }

 private:
  void fire_hooks();
  std::shared_ptr<TensorImpl> leaf_;
};

}  // namespace loom::autograd
