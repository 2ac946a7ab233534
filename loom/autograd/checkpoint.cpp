// Activation checkpointing by recomputation inside the backward pass.
#include "loom/autograd/checkpoint.h"

#include "loom/autograd/engine.h"
#include "loom/autograd/function.h"

namespace loom::autograd {

Tensor checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = fn(inputs).detach();  // a fresh handle even if fn returned one of its inputs
  }
  if (!grad_enabled()) return out;
  // fn may use parameters it captures rather than takes as inputs, so the node is attached
  // even when no input requires grad; the recomputation decides what actually gets gradients.
  auto node = std::make_shared<FunctionNode>("checkpoint", [fn, inputs](const Tensor& g) {
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
    if (y.requires_grad()) backward(y, g);
    std::vector<Tensor> grads;
    for (const Tensor& d : detached) grads.push_back(d.requires_grad() ? d.grad() : Tensor());
    return grads;
  });
  for (const Tensor& t : inputs) node->next.push_back(gradient_edge(t));
  out.impl()->grad_fn = std::move(node);
  out.impl()->requires_grad = true;
  return out;
}

}  // namespace loom::autograd
