// How ops join the graph: an op computes its output, then attach() links it to its inputs
// with a backward closure. Closures must save the output as out.detach() — saving the output
// handle itself would make a reference cycle through its own grad_fn.
#pragma once

#include <initializer_list>
#include <unordered_set>

#include "loom/autograd/node.h"

namespace loom::autograd {

// Grad mode is per thread; NoGradGuard turns recording off for its scope.
bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};
class EnableGradGuard {
 public:
  EnableGradGuard();
  ~EnableGradGuard();
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool prev_;
};

// True when grad mode is on and some input requires grad: only then is a closure worth building.
bool needs_grad(std::initializer_list<Tensor> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);
// The node a gradient for t flows into: its grad_fn, its AccumulateGrad (leaf), or null.
std::shared_ptr<Node> gradient_edge(const Tensor& t);
// While alive, records every leaf that requires grad and reaches an op on this thread, even
// under NoGradGuard (activation checkpointing learns which parameters a function uses).
class LeafCollector {
 public:
  LeafCollector();
  ~LeafCollector();
  LeafCollector(const LeafCollector&) = delete;
  LeafCollector& operator=(const LeafCollector&) = delete;
  std::vector<Tensor> leaves;  // in first-use order

 private:
  friend void attach(Tensor&, const char*, const std::vector<Tensor>&, BackwardFn, AccumulateFn);
  std::unordered_set<const TensorImpl*> seen_;
  LeafCollector* prev_;
};

// Makes out a non-leaf whose gradient flows through fn into inputs. No-op unless needs_grad.
// accumulate (one input only) may add the gradient into one that is already there instead.
void attach(Tensor& out, const char* op, const std::vector<Tensor>& inputs, BackwardFn fn, AccumulateFn accumulate = nullptr);

}  // namespace loom::autograd
