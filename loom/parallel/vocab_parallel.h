// Cross-entropy over logits split by vocabulary across a group (Megatron's vocab-parallel loss):
// rank r holds columns [r·Vl, (r+1)·Vl) of the whole (…, Vl·n) logits, and the whole logits are
// never gathered. The row maxima, the sums of exponentials and the target logits are reduced
// over the group (three all-reduces of one value per row); the backward is local.
#pragma once

#include <memory>

#include "loom/core/tensor.h"
#include "loom/dist/group.h"
#include "loom/ops/nn.h"

namespace loom::parallel {

// logits: (..., Vl) f32, this rank's slice; targets: (...) integer ids of the whole vocabulary.
// Columns at or beyond vocab_size (a padded vocabulary) take no part; targets equal to
// ignore_index contribute nothing. The result equals ops::cross_entropy on the whole logits,
// on every rank of the group; each rank's gradient is that of its slice.
Tensor vocab_parallel_cross_entropy(const Tensor& logits, const Tensor& targets, const std::shared_ptr<dist::Group>& group,
                                    int64_t vocab_size, int64_t ignore_index = -100, ops::Reduction reduction = ops::Reduction::mean);

}  // namespace loom::parallel
