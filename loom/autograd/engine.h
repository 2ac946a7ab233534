// The backward engine: runs the graph below a root in reverse topological order.
#pragma once

#include "loom/core/tensor.h"

namespace loom::autograd {

// Accumulates d(root)/d(leaf) into every reachable leaf's .grad. grad defaults to 1 for a
// one-element root. Without retain_graph the saved tensors are freed as nodes finish.
void backward(const Tensor& root, const Tensor& grad = Tensor(), bool retain_graph = false);

}  // namespace loom::autograd
