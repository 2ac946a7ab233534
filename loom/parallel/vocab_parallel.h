// The vocabulary split across a tensor-parallel group (Megatron's vocab-parallel embedding,
// head and loss). The padded vocabulary is padded further to a multiple of 128 × the group's
// size; rank r holds rows [r·Vl, (r+1)·Vl) of the embedding and head, Vl = that / size, and the
// rows past the model's padded vocabulary are zeros that take no part.
//
// Cross-entropy over logits split by vocabulary across a group (Megatron's vocab-parallel loss):
// rank r holds columns [r·Vl, (r+1)·Vl) of the whole (…, Vl·n) logits, and the whole logits are
// never gathered. The row maxima, the sums of exponentials and the target logits are reduced
// over the group (three all-reduces of one value per row); the backward is local.
#pragma once

#include <memory>

#include "loom/core/tensor.h"
#include "loom/dist/group.h"
#include "loom/nn/layers.h"
#include "loom/ops/nn.h"

namespace loom::parallel {

// logits: (..., Vl) f32, this rank's slice; targets: (...) integer ids of the whole vocabulary.
// Columns at or beyond vocab_size (a padded vocabulary) take no part; targets equal to
// ignore_index contribute nothing. The result equals ops::cross_entropy on the whole logits,
// on every rank of the group; each rank's gradient is that of its slice.
Tensor vocab_parallel_cross_entropy(const Tensor& logits, const Tensor& targets, const std::shared_ptr<dist::Group>& group,
                                    int64_t vocab_size, int64_t ignore_index = -100, ops::Reduction reduction = ops::Reduction::mean);

// The rows of the vocabulary rank r of a group of `size` holds: a multiple of 128 per rank.
int64_t vocab_rows_per_rank(int64_t padded_vocab, int size);

// Rank r's rows of a whole embedding. An id outside them looks up zeros; the partial embeddings
// are summed over the group (all-reduce forward, identity backward), or under sequence
// parallelism reduce-scattered along the sequence (dim 1).
class VocabParallelEmbedding : public nn::Embedding {
 public:
  VocabParallelEmbedding(const nn::Embedding& whole, std::shared_ptr<dist::Group> group, bool sequence_parallel = false);
  Tensor forward(const Tensor& ids) const override;

 private:
  std::shared_ptr<dist::Group> group_;
  bool sequence_parallel_;
};

// Rank r's rows of a whole head (of its tied embedding's block when tied is defined): logits of
// its vocabulary slice, never gathered; the loss is vocab_parallel_cross_entropy. Its input comes
// whole through the final norm's copy_to (or all-gather), as a column-parallel linear's does.
class VocabParallelHead : public nn::LMHead {
 public:
  VocabParallelHead(Tensor tied, const nn::LMHead& whole, std::shared_ptr<dist::Group> group);
  Tensor loss(const Tensor& logits, const Tensor& targets, ops::Reduction reduction) const override;

 private:
  std::shared_ptr<dist::Group> group_;
};

}  // namespace loom::parallel
