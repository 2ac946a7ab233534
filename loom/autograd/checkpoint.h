// Activation checkpointing: run a function without saving its intermediates, and run it
// again (with grad) during backward to get them back. fn must be deterministic — dropout
// inside it must take its RNG key from its arguments or captures, never from hidden state.
#pragma once

#include <functional>
#include <vector>

#include "loom/core/tensor.h"

namespace loom::autograd {

using CheckpointFn = std::function<Tensor(const std::vector<Tensor>& inputs)>;
Tensor checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs);

}  // namespace loom::autograd
