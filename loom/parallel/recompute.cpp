// Activation recompute: a block wrapper around autograd::checkpoint.
#include "loom/parallel/recompute.h"

#include "loom/autograd/checkpoint.h"

namespace loom::parallel {

HookHandle recompute_blocks(nn::TransformerLM& model) {
  return model.add_block_wrapper([](size_t, const Tensor& x, const nn::TransformerLM::BlockFn& block) {
    // checkpoint keeps the function to run it again in backward: it owns a copy of the block.
    return autograd::checkpoint([block](const std::vector<Tensor>& in) { return block(in[0]); }, {x});
  });
}

}  // namespace loom::parallel
