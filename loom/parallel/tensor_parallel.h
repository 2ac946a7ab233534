// Tensor parallelism (Megatron-style), applied to a model from outside by module surgery:
// column-parallel linears keep a slice of the output features, row-parallel ones a slice of the
// input features, and the paired collectives of mappings.h move activations and gradients.
// In each block, attention's q/k/v projections are column-parallel (whole heads per rank, so
// attention runs on local heads) and its output projection row-parallel; the MLP's up
// projections (fc, or SwiGLU's gate and up) are column-parallel and its down projection
// row-parallel. The token embedding and the head are split by vocabulary (vocab_parallel.h).
// Norms, learned positions and row-parallel biases stay whole; their gradients come out
// identical on every rank of the group, so they need no communication — except those of the
// per-head q/k norms (Qwen3), which see only this rank's heads and are summed over the group.
// With fewer kv heads than ranks (the ranks a multiple of them), each kv head's k/v rows are
// replicated on the ranks whose query heads use it.
// Sequence parallelism (Megatron's): between the tensor-parallel regions — norms, residual adds,
// embeddings' sum — each rank holds T/n of the positions; the norms gather the sequence before
// each region and the row-parallel linears reduce-scatter it after, instead of all-reducing.
// Per block and micro-batch this all-reduces the activations twice forward (after the two
// row-parallel linears) and twice backward (the two norms' copy_to), as Megatron does.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "loom/dist/group.h"
#include "loom/nn/transformer.h"

namespace loom::parallel {

// Block b = r / replicas of a whole linear's weight and bias split into n / replicas blocks of
// rows (rank r's rows [r·out/n, (r+1)·out/n) when replicas is 1). Output sharded along its last
// dim. Its input must come whole through copy_to (or, under sequence parallelism, all_gather_to):
// the plan puts that at the end of the norm before it, once for every linear reading it. With
// replicas > 1 (kv heads fewer than ranks) `replica_group` holds the ranks sharing this block:
// the weight's gradient is summed over them in backward.
class ColumnParallelLinear : public nn::Linear {
 public:
  ColumnParallelLinear(const nn::Linear& whole, std::shared_ptr<dist::Group> group, int replicas = 1,
                       std::shared_ptr<dist::Group> replica_group = nullptr);
  Tensor forward(const Tensor& x) const override;

 private:
  std::shared_ptr<dist::Group> replica_group_;
};

// The rank's columns [r·in/n, (r+1)·in/n) of a whole linear, computed by `local`, a linear of
// their own without the bias: a copy of the whole's columns, a quantised block of them, or LoRA
// over either (tensor_parallel.cpp). Its partial products (an adapter's joined to its base's) are
// summed over the group, then the bias, whole, added once. Input sharded along its last dim,
// output replicated — or, under sequence parallelism, reduce-scattered along the sequence (dim 1),
// the bias added to each rank's positions and its gradient summed over the group. `local` stands
// in this module's place (Module::register_module): its parameters keep the whole's names.
class RowParallelLinear : public nn::Linear {
 public:
  RowParallelLinear(std::shared_ptr<nn::Linear> local, const nn::Linear& whole, std::shared_ptr<dist::Group> group,
                    bool sequence_parallel = false);
  Tensor forward(const Tensor& x) const override;

 private:
  std::shared_ptr<nn::Linear> local_;
  std::shared_ptr<dist::Group> group_;
  bool sequence_parallel_;
};

// A norm of a tensor-parallel model, its parameters whole on every rank; what it does depends
// on where its input lies:
// - whole: a norm ahead of column-parallel linears: its output goes to them through copy_to
//   (backward: one all-reduce of the input gradient for all of them);
// - sequence: the same under sequence parallelism: it runs on this rank's positions (B, T/n, C)
//   and gathers the sequence (backward: reduce-scatter);
// - heads: a per-head norm inside attention (Qwen3's q/k norms over D) on this rank's heads,
//   whose output stays with them.
// Under sequence and heads, the parameters' gradients, from this rank's positions or heads only,
// are summed over the group.
class TensorParallelNorm : public nn::Norm {
 public:
  enum class Input { whole, sequence, heads };
  TensorParallelNorm(const nn::Norm& whole, std::shared_ptr<dist::Group> group, Input input);
  Tensor forward(const Tensor& x) const override;

 private:
  std::shared_ptr<dist::Group> group_;
  Input input_;
};

// Learned positions under sequence parallelism: the rows of this rank's positions (T/n of T).
class SequenceParallelPositions : public nn::Embedding {
 public:
  SequenceParallelPositions(const nn::Embedding& whole, std::shared_ptr<dist::Group> group);
  Tensor forward(const Tensor& positions) const override;

 private:
  std::shared_ptr<dist::Group> group_;
};

// Where a rank's parameters sit in the whole model's: each split parameter is cut along one dim
// into group->size() equal blocks, rank r holding block r; the others are whole on every rank of
// the group, with gradients that come out identical on each.
struct TensorParallelLayout {
  struct Split {
    int dim = -1;       // -1: whole
    int64_t whole = 0;  // the whole tensor's size along dim; blocks past it (vocabulary padding for tp, dim 0 only) are zeros
    int replicas = 1;   // ranks r with the same r / replicas hold the same block (kv heads fewer than ranks)
  };
  std::shared_ptr<dist::Group> group;   // null: no tensor parallelism
  std::map<std::string, Split> splits;  // by parameter name
  int size() const { return group ? group->size() : 1; }
  int rank() const { return group ? group->rank() : 0; }
  Split split_of(const std::string& param) const {
    auto it = splits.find(param);
    return it == splits.end() ? Split{} : it->second;
  }
  // Where this rank's parameter p sits in the whole model's (for deferred initialisation).
  nn::TransformerLM::Placement place(const std::string& name, const Tensor& p) const {
    nn::TransformerLM::Placement at{p.shape(), Shape(size_t(p.ndim()), 0)};
    const Split s = split_of(name);
    if (s.dim >= 0) {
      at.whole[size_t(s.dim)] = s.whole;
      at.offset[size_t(s.dim)] = int64_t(rank() / s.replicas) * p.size(s.dim);
    }
    return at;
  }
};

// Replaces every block's linears by their tensor-parallel forms over `group`, and the token
// embedding and head by vocabulary-parallel ones (vocab_parallel.h). The model's weights must
// already hold their whole values (each rank keeps its slice of them), or none yet (deferred).
// A quantised linear (QLoRA's base) keeps its block of the whole's codes. A LoRA linear keeps
// its adapter split as Megatron splits it: over a column-parallel base, A (r, in) whole on every
// rank (its gradient, each rank's from its own rows, summed over the group) and B (out/n, r)
// split like the base; over a row-parallel base, A (r, in/n) split like the base and B (out, r)
// whole (its gradient summed over the group), the adapter's partial sums joining the base's
// before their reduction; its dropout masks are the whole input's. Parameters frozen before
// (LoRA's base, training.trainable's complement) stay frozen. Errors name the size that does not
// divide: heads, kv heads (nor are they a divisor of the ranks), MLP width.
TensorParallelLayout apply_tensor_parallel(nn::TransformerLM& model, const std::shared_ptr<dist::Group>& group,
                                           bool sequence_parallel = false);

}  // namespace loom::parallel
