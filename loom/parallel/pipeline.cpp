// Pipeline stages: cutting the model, the schedules, and running them with point-to-point
// activations and gradients.
#include "loom/parallel/pipeline.h"

#include <chrono>
#include <map>
#include <numeric>

#include "loom/autograd/function.h"
#include "loom/nn/lora.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/shape.h"

namespace loom::parallel {

std::vector<PipelineAction> pipeline_schedule(const std::string& schedule, int stages, int stage, int chunks, int micro) {
  LOOM_CHECK(stages >= 1 && stage >= 0 && stage < stages && chunks >= 1 && micro >= 1,
             "pipeline: stage {} of {} with {} chunks and {} micro-batches", stage, stages, chunks, micro);
  std::vector<PipelineAction> out;
  if (schedule == "gpipe" || schedule == "1f1b") {
    LOOM_CHECK(chunks == 1, "pipeline: the {} schedule runs one chunk per stage, not {} (virtual stages need \"interleaved\")", schedule,
               chunks);
    // GPipe: every forward, then every backward. 1F1B: as many forwards as stages after this one
    // (the pipeline's depth below it), then a forward and a backward in turn, then the backwards left.
    const int warmup = schedule == "gpipe" ? micro : std::min(stages - stage - 1, micro);
    for (int i = 0; i < warmup; ++i) out.push_back({true, 0, i});
    for (int i = 0; i + warmup < micro; ++i) {
      out.push_back({true, 0, warmup + i});
      out.push_back({false, 0, i});
    }
    for (int i = micro - warmup; i < micro; ++i) out.push_back({false, 0, i});
    return out;
  }
  LOOM_CHECK(schedule == "interleaved", "pipeline: unknown schedule '{}' (gpipe, 1f1b, interleaved)", schedule);
  LOOM_CHECK(chunks > 1, "pipeline: the interleaved schedule needs more than one chunk per stage (parallel.virtual_stages), got {}", chunks);
  LOOM_CHECK(micro % stages == 0, "pipeline: the interleaved schedule needs the micro-batches (training.grad_accum = {}) to be a multiple of "
             "the stages ({})", micro, stages);
  // Megatron's interleaved 1F1B: virtual step k runs micro-batch (k / (stages·chunks))·stages +
  // k mod stages on chunk (k mod (stages·chunks)) / stages — backwards on the chunks in reverse.
  const int total = micro * chunks, group = stages * chunks;
  auto action = [&](int k, bool forward) {
    const int c = (k % group) / stages;
    return PipelineAction{forward, forward ? c : chunks - 1 - c, (k / group) * stages + k % stages};
  };
  const int warmup = std::min((stages - stage - 1) * 2 + (chunks - 1) * stages, total);
  for (int k = 0; k < warmup; ++k) out.push_back(action(k, true));
  for (int k = 0; k + warmup < total; ++k) {
    out.push_back(action(warmup + k, true));
    out.push_back(action(k, false));
  }
  for (int k = total - warmup; k < total; ++k) out.push_back(action(k, false));
  return out;
}

std::vector<size_t> pipeline_chunk_starts(size_t layers, int stages, int chunks, const std::vector<int64_t>& layout) {
  const size_t n = size_t(stages) * size_t(chunks);
  std::vector<size_t> starts{0};
  if (!layout.empty()) {
    LOOM_CHECK(layout.size() == size_t(stages) && chunks == 1, "pipeline: parallel.pp_layout has {} entries for {} stages", layout.size(),
               stages);
    for (int64_t l : layout) starts.push_back(starts.back() + size_t(std::max<int64_t>(l, 0)));
    LOOM_CHECK(starts.back() == layers, "pipeline: parallel.pp_layout {} adds up to {} layers; the model has {}", layout, starts.back(),
               layers);
    return starts;
  }
  LOOM_CHECK(n <= layers, "pipeline: {} stages × {} virtual stages make {} chunks for {} layers; each needs at least one", stages, chunks, n,
             layers);
  LOOM_CHECK(chunks == 1 || layers % n == 0,
             "pipeline: the interleaved schedule needs the {} layers to be a multiple of stages × virtual stages = {}", layers, n);
  for (size_t k = 0; k < n; ++k) starts.push_back(starts.back() + layers / n + (k < layers % n ? 1 : 0));
  return starts;
}

Pipeline::Pipeline(nn::TransformerLM& model, std::shared_ptr<dist::Group> group, PipelineOptions options)
    : model_(model), group_(std::move(group)), options_(std::move(options)), stages_(group_->size()), stage_(group_->rank()),
      chunks_(options_.virtual_stages) {
  starts_ = pipeline_chunk_starts(model_.layers.size(), stages_, chunks_, options_.layout);
  const bool tied = model_.config().tied_head;
  // What this stage does not run goes: other chunks' layers, the embeddings off the first
  // stage (the last keeps a tied embedding: its head's weight), the norm and head off the last.
  std::vector<int> chunk_of(model_.layers.size(), -1);  // local chunk of each layer held here
  for (int v = 0; v < chunks_; ++v)
    for (size_t l = starts_[size_t(global_chunk(v))]; l < starts_[size_t(global_chunk(v)) + 1]; ++l) chunk_of[l] = v;
  for (size_t l = 0; l < model_.layers.size(); ++l)
    if (chunk_of[l] < 0) model_.remove_module("layers." + std::to_string(l));
  if (!first()) {
    if (model_.pos_emb) model_.remove_module("pos_emb");
    if (!(last() && tied)) model_.remove_module("tok_emb");
  }
  if (!last()) {
    model_.remove_module("norm");
    model_.remove_module("lm_head");
  }
  if (tied && stages_ > 1) tied_ = group_->split(first() || last() ? 0 : 1, stage_, group_->name() + ".tied");
  params_.resize(size_t(chunks_));
  for (const auto& [name, p] : model_.named_parameters()) {
    int v = chunks_ - 1;  // the final norm and head, and the last stage's copy of a tied embedding
    if (name.rfind("layers.", 0) == 0) v = chunk_of[std::stoul(name.substr(7))];
    else if (first() && (name.rfind("tok_emb.", 0) == 0 || name.rfind("pos_emb.", 0) == 0)) v = 0;
    params_[size_t(v)].push_back(p);
  }
}

void Pipeline::configure(DataParallelOptions& options) const {
  options.pp = group_;
  if (!tied_) return;
  options.tied["tok_emb.weight"] = tied_;
  if (!first()) options.copies.insert("tok_emb.weight");
}

Tensor Pipeline::receive(int from_stage, int tag, const data::Batch& batch) {
  const int64_t T = batch.inputs.size(1);
  LOOM_CHECK(T % options_.sequence_split == 0, "pipeline: {} positions do not split over {} sequence-parallel ranks", T, options_.sequence_split);
  Tensor t = Tensor::empty({batch.inputs.size(0), T / options_.sequence_split, model_.config().n_embd});
  const auto t0 = std::chrono::steady_clock::now();
  group_->recv(t, from_stage, tag)->wait();
  idle_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return t;
}

void Pipeline::send(const Tensor& t, int to_stage, int tag) {
  Tensor data = ops::contiguous(t.detach());
  sends_.emplace_back(group_->send(data, to_stage, tag), data);
}

void Pipeline::wait_sends() {
  for (auto& [work, data] : sends_) work->wait();
  sends_.clear();
}

// Tags: 2k for the activation going into global chunk k, 2k + 1 for the gradient coming back to it.
Tensor Pipeline::forward(int chunk, const data::Batch& batch, double scale, Tensor* input) {
  const int k = global_chunk(chunk), last_chunk = stages_ * chunks_ - 1;
  const Tensor pos = batch.positions.defined() ? batch.positions : nn::TransformerLM::positions(batch.inputs.size(1));
  Tensor x;
  if (k == 0) {
    x = model_.embed(batch.inputs, pos);
  } else {
    x = receive((k - 1) % stages_, 2 * k, batch);
    if (autograd::grad_enabled()) x.set_requires_grad(true);
    if (input) *input = x;
  }
  Tensor y = model_.blocks(x, pos, starts_[size_t(k)], starts_[size_t(k) + 1]);
  if (k == last_chunk) return ops::mul(model_.loss(model_.head(y), batch.targets, ops::Reduction::sum), scale);
  send(y, (k + 1) % stages_, 2 * (k + 1));
  return y;
}

double Pipeline::step(const std::vector<data::Batch>& micro, double scale, DataParallel& dp) {
  const int m = int(micro.size()), last_chunk = stages_ * chunks_ - 1;
  std::map<std::pair<int, int>, std::pair<Tensor, Tensor>> live;  // (chunk, micro) -> (input, output or loss)
  std::vector<int> backwards(size_t(chunks_), 0);
  double loss = 0;
  for (const PipelineAction& a : pipeline_schedule(options_.schedule, stages_, stage_, chunks_, m)) {
    const int k = global_chunk(a.chunk);
    // LoRA dropout's position is that of the micro-batch this action runs (micro-batches
    // interleave): a backward that recomputes the forward draws the forward's masks again.
    nn::set_lora_dropout(model_, micro[size_t(a.micro)].first);
    if (a.forward) {
      dp.before_forward();
      Tensor input;
      Tensor out = forward(a.chunk, micro[size_t(a.micro)], scale, &input);
      if (k == last_chunk) loss += out.item();
      live[{a.chunk, a.micro}] = {input, out};
      continue;
    }
    auto it = live.find({a.chunk, a.micro});
    LOOM_CHECK(it != live.end(), "pipeline: backward of chunk {} micro-batch {} before its forward", k, a.micro);
    auto [input, out] = std::move(it->second);
    live.erase(it);
    // The chunk's parameters are synchronised with its last micro-batch.
    const bool sync = ++backwards[size_t(a.chunk)] == m;
    // ZeRO-3 releases the parameters outside the blocks when a backward has passed the blocks;
    // with several micro-batches in flight the head's backward may come after that: gather again.
    if (k == last_chunk) dp.before_forward();
    const Tensor grad = k == last_chunk ? Tensor() : receive((k + 1) % stages_, 2 * k + 1, micro[size_t(a.micro)]);
    dp.backward(out, grad, sync, params_[size_t(a.chunk)]);
    if (k > 0) send(input.grad(), (k - 1) % stages_, 2 * (k - 1) + 1);
  }
  wait_sends();
  return loss;
}

double Pipeline::evaluate(const std::vector<data::Batch>& batches, DataParallel& dp) {
  autograd::NoGradGuard no_grad;
  const int last_chunk = stages_ * chunks_ - 1;
  double total = 0;
  for (const data::Batch& b : batches) {
    for (int v = 0; v < chunks_; ++v) {
      dp.before_forward();
      Tensor out = forward(v, b, 1.0, nullptr);
      if (global_chunk(v) == last_chunk) total += out.item();
    }
  }
  wait_sends();
  return total;
}

}  // namespace loom::parallel
