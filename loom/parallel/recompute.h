// Activation recompute (`training.recompute = "blocks"`), applied to a model from outside: each
// transformer block runs under autograd::checkpoint, so its forward keeps only the block's input
// and backward runs the block again to get the activations back. The recomputation performs the
// same operations on the same values, so losses and gradients are bit-identical to running
// without it. Apply it before data parallelism (ZeRO-3 must gather a block's parameters around
// the recomputation too, so its wrapper has to be the outer one).
#pragma once

#include "loom/nn/transformer.h"

namespace loom::parallel {

// Recompute stays on while the handle lives.
HookHandle recompute_blocks(nn::TransformerLM& model);

}  // namespace loom::parallel
