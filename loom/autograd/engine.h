// The backward engine: runs the graph below a root in reverse topological order.
#pragma once

#include <unordered_map>
#include <unordered_set>

#include "loom/core/tensor.h"

namespace loom::autograd {

// Accumulates d(root)/d(leaf) into every reachable leaf's .grad. grad defaults to 1 for a
// one-element root. Without retain_graph the saved tensors are freed as nodes finish.
void backward(const Tensor& root, const Tensor& grad = Tensor(), bool retain_graph = false);

// The leaves that require grad and that a backward from root would reach.
std::unordered_set<const TensorImpl*> reachable_leaves(const Tensor& root);

// Gradients of leaves, keyed by their TensorImpl, for a backward that must not touch .grad.
using LeafGrads = std::unordered_map<const TensorImpl*, Tensor>;
// As backward(), but every leaf's gradient is summed into `captured` instead of its .grad (no
// hooks fire). Activation checkpointing uses it to hand leaf gradients to the outer pass.
void backward_captured(const Tensor& root, const Tensor& grad, LeafGrads& captured);

}  // namespace loom::autograd
