// Activation checkpointing by recomputation inside the backward pass.
#include "loom/autograd/checkpoint.h"

#include "loom/autograd/engine.h"
#include "loom/autograd/function.h"

namespace loom::autograd {

Tensor checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs) {
  Tensor out;
  LeafCollector used;
  {
    NoGradGuard no_grad;
    out = fn(inputs).detach();  // a fresh handle even if fn returned one of its inputs
  }
  if (!grad_enabled()) return out;
  // The parameters fn captures become edges of this node next to its inputs, so their
  // gradients reach .grad through the outer pass: once, after every use has contributed, with
  // hooks firing then (a nested pass writing .grad directly would fire them early).
  std::vector<Tensor> params;
  for (const Tensor& leaf : used.leaves) {
    bool is_input = false;
    for (const Tensor& x : inputs) is_input = is_input || x.impl() == leaf.impl();
    if (!is_input) params.push_back(leaf);
  }
  auto node = std::make_shared<FunctionNode>("checkpoint", [fn, inputs, params](const Tensor& g) {
    std::vector<Tensor> detached;
    for (const Tensor& x : inputs) {
      Tensor d = x.detach();
      if (x.requires_grad()) d.set_requires_grad(true);
      detached.push_back(d);
    }
    Tensor y;
    {
      EnableGradGuard enable;
      y = fn(detached);
    }
    LeafGrads captured;
    if (y.requires_grad()) backward_captured(y, g, captured);
    auto grad_of = [&](const Tensor& t) {
      auto it = captured.find(t.impl());
      return it == captured.end() ? Tensor() : it->second;
    };
    std::vector<Tensor> grads;
    for (const Tensor& d : detached) grads.push_back(grad_of(d));
    for (const Tensor& p : params) grads.push_back(grad_of(p));
    return grads;
  });
  for (const Tensor& t : inputs) node->add_input(t);
  for (const Tensor& p : params) node->add_input(p);
  out.impl()->grad_fn = std::move(node);
  out.impl()->requires_grad = true;
  return out;
}

}  // namespace loom::autograd
