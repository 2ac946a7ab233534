// Column- and row-parallel linears and the plan that puts them into a TransformerLM.
#include "loom/parallel/tensor_parallel.h"

#include "loom/autograd/function.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/shape.h"
#include "loom/parallel/mappings.h"
#include "loom/parallel/vocab_parallel.h"

namespace loom::parallel {

namespace {

// n / (ranks / replicas): the size of one of the blocks that n splits into.
int64_t shard(int64_t n, const dist::Group& g, const char* what, int replicas = 1) {
  LOOM_CHECK(n * replicas % g.size() == 0, "tensor parallel: {} of {} does not split over {} ranks", what, n, g.size());
  return n * replicas / g.size();
}

// A deferred whole (deferred initialisation) has no values to copy: its replacement stays deferred.
void copy_slice(Tensor dst, const Tensor& src, int64_t dim, int64_t start) {
  if (!src.has_memory()) return;
  autograd::NoGradGuard no_grad;
  ops::copy_(dst, ops::narrow(src, dim, start, dst.size(dim)));
}

}  // namespace

ColumnParallelLinear::ColumnParallelLinear(const nn::Linear& whole, std::shared_ptr<dist::Group> group, int replicas,
                                           std::shared_ptr<dist::Group> replica_group)
    : nn::Linear(whole.weight.size(1), whole.weight.size(0) * replicas / group->size(), whole.bias.defined(), !whole.weight.has_memory()),
      replica_group_(std::move(replica_group)) {
  shard(whole.weight.size(0), *group, "output features", replicas);
  const int64_t rows = weight.size(0), start = group->rank() / replicas * rows;
  copy_slice(weight, whole.weight, 0, start);
  if (bias.defined()) copy_slice(bias, whole.bias, 0, start);
}

Tensor ColumnParallelLinear::forward(const Tensor& x) const {
  if (!replica_group_) return ops::linear(x, weight, bias);
  // Each replica's gradient holds its own query heads' share: copy_to sums them in backward.
  return ops::linear(x, copy_to(weight, replica_group_), bias.defined() ? copy_to(bias, replica_group_) : bias);
}

RowParallelLinear::RowParallelLinear(const nn::Linear& whole, std::shared_ptr<dist::Group> group, bool sequence_parallel)
    : nn::Linear(shard(whole.weight.size(1), *group, "input features"), whole.weight.size(0), whole.bias.defined(), !whole.weight.has_memory()),
      group_(std::move(group)), sequence_parallel_(sequence_parallel) {
  copy_slice(weight, whole.weight, 1, group_->rank() * weight.size(1));
  if (bias.defined()) copy_slice(bias, whole.bias, 0, 0);
}

Tensor RowParallelLinear::forward(const Tensor& x) const {
  const Tensor partial = ops::linear(x, weight, Tensor());
  if (!sequence_parallel_) {
    Tensor y = reduce_from(partial, group_);
    return bias.defined() ? ops::add(y, bias) : y;
  }
  Tensor y = reduce_scatter_to(partial, group_, 1);
  return bias.defined() ? ops::add(y, copy_to(bias, group_)) : y;
}

TensorParallelNorm::TensorParallelNorm(const nn::Norm& whole, std::shared_ptr<dist::Group> group, Input input)
    : nn::Norm(whole.weight.size(0), whole.rms(), whole.eps(), !whole.weight.has_memory()), group_(std::move(group)), input_(input) {
  copy_slice(weight, whole.weight, 0, 0);
  if (bias.defined()) copy_slice(bias, whole.bias, 0, 0);
}

Tensor TensorParallelNorm::forward(const Tensor& x) const {
  if (input_ == Input::whole) return copy_to(apply(x, weight, bias), group_);
  const Tensor y = apply(x, copy_to(weight, group_), bias.defined() ? copy_to(bias, group_) : bias);
  return input_ == Input::sequence ? all_gather_to(y, group_, 1) : y;
}

SequenceParallelPositions::SequenceParallelPositions(const nn::Embedding& whole, std::shared_ptr<dist::Group> group)
    : nn::Embedding(whole.weight.size(0), whole.weight.size(1), !whole.weight.has_memory()), group_(std::move(group)) {
  copy_slice(weight, whole.weight, 0, 0);
}

// (T) positions give (T, C) rows, packed (B, T) ones (B, T, C): the sequence is the last but one dim.
Tensor SequenceParallelPositions::forward(const Tensor& positions) const {
  return scatter_to(nn::Embedding::forward(positions), group_, positions.ndim() - 1);
}

TensorParallelLayout apply_tensor_parallel(nn::TransformerLM& model, const std::shared_ptr<dist::Group>& group, bool sequence_parallel) {
  const models::ModelConfig& c = model.config();
  shard(c.n_head, *group, "attention heads");
  // Fewer kv heads than ranks: each is replicated on the group->size() / n_kv_head ranks whose
  // query heads use it (those ranks are neighbours: query heads are split in order).
  const int replicas = c.n_kv_head < group->size() && group->size() % c.n_kv_head == 0 ? group->size() / int(c.n_kv_head) : 1;
  if (replicas == 1) shard(c.n_kv_head, *group, "kv heads");
  const std::shared_ptr<dist::Group> kv_group = replicas > 1 ? group->split(group->rank() / replicas, group->rank(), group->name() + ".kv") : nullptr;
  TensorParallelLayout layout{group, {}};
  // Puts make(whole linear) at path and notes how its weight (and a column-parallel bias) split.
  auto replace = [&](const std::string& path, auto make, int weight_dim, int reps) {
    auto& whole = dynamic_cast<nn::Linear&>(*model.module_at(path));
    const int64_t whole_rows = whole.weight.size(0), whole_cols = whole.weight.size(1);
    const bool bias_split = whole.bias.defined() && weight_dim == 0;
    model.replace_module(path, make(whole));
    layout.splits[path + ".weight"] = {weight_dim, weight_dim == 0 ? whole_rows : whole_cols, reps};
    if (bias_split) layout.splits[path + ".bias"] = {0, whole_rows, reps};
  };
  auto column = [&](const std::string& path, int reps = 1) {
    replace(path, [&](const nn::Linear& w) { return std::make_shared<ColumnParallelLinear>(w, group, reps, reps > 1 ? kv_group : nullptr); },
            0, reps);
  };
  auto row = [&](const std::string& path) {
    replace(path, [&](const nn::Linear& w) { return std::make_shared<RowParallelLinear>(w, group, sequence_parallel); }, 1, 1);
  };
  // Norms stay whole (not in the layout); outer: those between the tensor-parallel regions.
  const TensorParallelNorm::Input outer = sequence_parallel ? TensorParallelNorm::Input::sequence : TensorParallelNorm::Input::whole;
  auto norm = [&](const std::string& path, TensorParallelNorm::Input input) {
    model.replace_module(path, std::make_shared<TensorParallelNorm>(dynamic_cast<nn::Norm&>(*model.module_at(path)), group, input));
  };
  // The vocabulary: the embedding first, so that a tied head shares its block.
  auto emb = std::make_shared<VocabParallelEmbedding>(*model.tok_emb, group, sequence_parallel);
  model.replace_module("tok_emb", emb);
  layout.splits["tok_emb.weight"] = {0, c.padded_vocab};
  auto head = std::make_shared<VocabParallelHead>(c.tied_head ? emb->weight : Tensor(), *model.lm_head, group);
  model.replace_module("lm_head", head);
  if (!c.tied_head) layout.splits["lm_head.weight"] = {0, c.padded_vocab};
  for (size_t i = 0; i < model.layers.size(); ++i) {
    const std::string block = "layers." + std::to_string(i) + ".";
    column(block + "attn.wq");
    for (const char* p : {"attn.wk", "attn.wv"}) column(block + p, replicas);
    row(block + "attn.wo");
    for (const char* p : c.swiglu ? std::vector<const char*>{"mlp.gate", "mlp.up"} : std::vector<const char*>{"mlp.fc"}) column(block + p);
    row(block + (c.swiglu ? "mlp.down" : "mlp.proj"));
    for (const char* p : {"attn_norm", "mlp_norm"}) norm(block + p, outer);
    if (c.qk_norm)
      for (const char* p : {"attn.q_norm", "attn.k_norm"}) norm(block + p, TensorParallelNorm::Input::heads);
  }
  norm("norm", outer);
  if (sequence_parallel && model.pos_emb) model.replace_module("pos_emb", std::make_shared<SequenceParallelPositions>(*model.pos_emb, group));
  return layout;
}

}  // namespace loom::parallel
