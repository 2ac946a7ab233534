// Column- and row-parallel linears and the plan that puts them into a TransformerLM.
#include "loom/parallel/tensor_parallel.h"

#include <set>

#include "loom/autograd/function.h"
#include "loom/nn/lora.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/shape.h"
#include "loom/parallel/mappings.h"
#include "loom/parallel/vocab_parallel.h"
#include "loom/quant/linear.h"

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

// The part of `whole` a row-parallel linear computes on this rank (RowParallelLinear's local):
// its columns without the bias, a quantised base's block of them, or LoRA over the base's part
// with A's columns and B whole (its gradient summed over the group), its dropout masks the whole
// input's.
std::shared_ptr<nn::Linear> row_local(const std::shared_ptr<nn::Linear>& whole, const std::shared_ptr<dist::Group>& group) {
  const int64_t in = whole->weight.size(1), cols = shard(in, *group, "input features"), start = group->rank() * cols;
  if (auto lora = std::dynamic_pointer_cast<nn::LoraLinear>(whole))
    return std::make_shared<nn::LoraLinear>(row_local(lora->base, group), row_local(lora->lora_A, group),
                                            std::make_shared<ColumnParallelLinear>(*lora->lora_B, group, group->size(), group), *lora, in, start);
  if (auto q = std::dynamic_pointer_cast<nn::QuantizedLinear>(whole)) return q->block(1, start, cols);
  auto local = std::make_shared<nn::Linear>(cols, whole->weight.size(0), false, !whole->weight.has_memory());
  copy_slice(local->weight, whole->weight, 1, start);
  return local;
}

// The column-parallel form of `whole` (block r / replicas of its rows): a ColumnParallelLinear,
// a quantised base's block (frozen: no gradient to sum), or LoRA over the base's form with A whole
// (a ColumnParallelLinear of as many replicas as ranks: its gradient is summed over the group) and
// B split like the base.
std::shared_ptr<nn::Linear> column_parallel(const std::shared_ptr<nn::Linear>& whole, const std::shared_ptr<dist::Group>& group, int replicas,
                                            const std::shared_ptr<dist::Group>& replica_group) {
  if (auto lora = std::dynamic_pointer_cast<nn::LoraLinear>(whole))
    return std::make_shared<nn::LoraLinear>(column_parallel(lora->base, group, replicas, replica_group),
                                            std::make_shared<ColumnParallelLinear>(*lora->lora_A, group, group->size(), group),
                                            std::make_shared<ColumnParallelLinear>(*lora->lora_B, group, replicas, replica_group), *lora,
                                            whole->weight.size(1), 0);
  if (auto q = std::dynamic_pointer_cast<nn::QuantizedLinear>(whole)) {
    const int64_t rows = shard(q->weight.size(0), *group, "output features", replicas);
    return q->block(0, group->rank() / replicas * rows, rows);
  }
  return std::make_shared<ColumnParallelLinear>(*whole, group, replicas, replica_group);
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

RowParallelLinear::RowParallelLinear(std::shared_ptr<nn::Linear> local, const nn::Linear& whole, std::shared_ptr<dist::Group> group,
                                     bool sequence_parallel)
    : nn::Linear(Tensor(), whole.parameter("bias")), group_(std::move(group)), sequence_parallel_(sequence_parallel) {
  weight = local->weight;  // the rank's columns, registered by local
  bias = whole.bias;       // whole; a parameter where the whole registers it (not a quantised base's)
  register_module("", local_, std::move(local));
}

Tensor RowParallelLinear::forward(const Tensor& x) const {
  const Tensor partial = local_->forward(x);
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
  // Module surgery makes new parameters, trainable: those frozen before stay frozen.
  std::set<std::string> frozen;
  for (const auto& [name, p] : model.named_parameters())
    if (!p.requires_grad()) frozen.insert(name);
  // Puts make(whole linear) at path and notes how its weight, a column-parallel bias and LoRA's
  // matrix split like the weight (B over a column-parallel base, A over a row-parallel one) split.
  auto replace = [&](const std::string& path, int dim, int reps, auto make) {
    auto whole = std::dynamic_pointer_cast<nn::Linear>(model.module_at(path));
    const TensorParallelLayout::Split split{dim, whole->weight.size(dim), reps};
    layout.splits[path + ".weight"] = split;
    if (whole->bias.defined() && dim == 0) layout.splits[path + ".bias"] = split;
    if (std::dynamic_pointer_cast<nn::LoraLinear>(whole)) layout.splits[path + (dim == 0 ? ".lora_B.weight" : ".lora_A.weight")] = split;
    model.replace_module(path, make(whole));
  };
  auto column = [&](const std::string& path, int reps = 1) {
    replace(path, 0, reps, [&](const std::shared_ptr<nn::Linear>& w) { return column_parallel(w, group, reps, reps > 1 ? kv_group : nullptr); });
  };
  auto row = [&](const std::string& path) {
    replace(path, 1, 1, [&](const std::shared_ptr<nn::Linear>& w) {
      return std::make_shared<RowParallelLinear>(row_local(w, group), *w, group, sequence_parallel);
    });
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
  for (auto& [name, p] : model.named_parameters())
    if (frozen.count(name)) p.set_requires_grad(false);
  return layout;
}

}  // namespace loom::parallel
