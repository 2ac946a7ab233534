// The data-parallel base (optimizer over this rank's pieces, clipping, checkpoint share) and
// DDP's bucketed, overlapped gradient all-reduce.
#include "loom/parallel/data_parallel.h"

#include <cmath>
#include <cstring>
#include <unordered_set>

#include "loom/autograd/engine.h"
#include "loom/ops/shape.h"

#include "loom/parallel/zero.h"

namespace loom::parallel {

namespace {

// Frozen parameters (LoRA's base, training.trainable's complement) get no gradient buffer, no
// optimizer state, no bucket or ZeRO unit, and no place in the optimizer's checkpoint state. A
// pipeline stage may hold none that train: it has nothing to update, and takes part in the
// collectives all the same.
std::vector<std::pair<std::string, Tensor>> trainable_parameters(const nn::Module& model) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& [name, p] : model.named_parameters())
    if (p.requires_grad()) out.emplace_back(name, p);
  return out;
}

}  // namespace

std::unique_ptr<DataParallel> DataParallel::create(nn::TransformerLM& model, std::shared_ptr<dist::Group> group,
                                                   const DataParallelOptions& options) {
  LOOM_CHECK(options.zero >= 0 && options.zero <= 3, "parallel.zero must be 0, 1, 2 or 3, got {}", options.zero);
  if (options.zero == 0) return std::make_unique<Ddp>(model, std::move(group), options);
  return std::make_unique<Zero>(model, std::move(group), options);
}

DataParallel::DataParallel(nn::TransformerLM& model, std::shared_ptr<dist::Group> group, bool sharded, const DataParallelOptions& options)
    : named_(trainable_parameters(model)), group_(std::move(group)), sharded_(sharded), tp_(options.tp), pp_(options.pp) {
  for (const auto& [name, p] : named_) {
    LOOM_CHECK(p.dtype() == DType::f32 && p.is_contiguous(), "data parallel: parameter {} must be contiguous f32", name);
    split_.push_back(tp_.split_of(name));
    copy_.push_back(options.copies.count(name) > 0);
    auto t = options.tied.find(name);
    tied_.push_back(t == options.tied.end() ? nullptr : t->second);
  }
}

void DataParallel::init_optimizer(std::vector<Tensor> pieces, const optim::AdamWConfig& cfg) {
  std::vector<bool> decay;
  for (const ParamRange& r : ranges(group_->rank())) decay.push_back(named_[r.param].second.ndim() >= 2);  // not norms and biases
  pieces_ = pieces;
  opt_ = std::make_unique<optim::AdamW>(std::move(pieces), std::move(decay), cfg);
}

void DataParallel::register_hooks() {
  for (size_t i = 0; i < named_.size(); ++i)
    hooks_.push_back(named_[i].second.register_post_accumulate_hook([this, i](const Tensor&) { on_grad_ready(i); }));
}

void DataParallel::backward(const Tensor& root, const Tensor& grad, bool sync, const std::vector<Tensor>& scope) {
  sync_ = sync;
  const std::unordered_set<const TensorImpl*> reached = autograd::reachable_leaves(root);
  std::unordered_set<const TensorImpl*> in_scope;
  for (const Tensor& p : scope) in_scope.insert(p.impl());
  for (size_t i = 0; i < named_.size(); ++i)
    if (!reached.count(named_[i].second.impl()) && (scope.empty() || in_scope.count(named_[i].second.impl()))) on_grad_ready(i);
  if (root.requires_grad()) root.backward(grad);  // not when nothing below it trains (a frozen first stage)
}

void DataParallel::finish() {
  finish_reduction();
  const std::vector<ParamRange> mine = ranges(group_->rank());
  for (size_t i = 0; i < mine.size(); ++i)
    if (const auto& g = tied_[mine[i].param]) {
      Tensor grad = pieces_[i].grad();
      g->all_reduce(grad, dist::ReduceOp::sum)->wait();
    }
}

double DataParallel::clip_grad_norm(double max_norm) {
  // Blocks of tensor-parallel parameters are summed over the tp group; whole parameters, alike on
  // every tp rank, are counted once.
  std::vector<Tensor> split, whole;
  const std::vector<ParamRange> mine = ranges(group_->rank());
  for (size_t i = 0; i < mine.size(); ++i) {
    const TensorParallelLayout::Split& s = split_[mine[i].param];
    if (copy_[mine[i].param])
      continue;  // counted on the stage it is a copy of
    else if (s.dim < 0)
      whole.push_back(pieces_[i]);
    else if (tp_.rank() % s.replicas == 0)  // a replicated block counts on its first rank
      split.push_back(pieces_[i]);
  }
  double sq = optim::grad_sq_sum(split);
  if (tp_.group) sq = dist::all_reduce_value(*tp_.group, sq);
  sq += optim::grad_sq_sum(whole);
  if (sharded_) sq = dist::all_reduce_value(*group_, sq);
  if (pp_) sq = dist::all_reduce_value(*pp_, sq);
  const double norm = std::sqrt(sq);
  grad_scale_ = optim::clip_factor(norm, max_norm);
  return norm;
}

void DataParallel::step(double lr) {
  opt_->step(lr, grad_scale_);
  grad_scale_ = 1.0;
  gather_params();
}

void DataParallel::zero_grad() {
  for (auto& [name, p] : named_) p.zero_grad();
}

namespace {
constexpr const char* kStateKinds[] = {"param.", "exp_avg.", "exp_avg_sq."};  // the tensors of each parameter in a checkpoint
}

std::map<std::string, Shape> DataParallel::checkpoint_shapes() const {
  std::map<std::string, Shape> out;
  for (size_t i = 0; i < named_.size(); ++i) {
    Shape shape = named_[i].second.shape();
    if (split_[i].dim >= 0) shape[size_t(split_[i].dim)] = split_[i].whole;
    for (const char* kind : kStateKinds) out.emplace(kind + named_[i].first, shape);
  }
  return out;
}

io::FlatSlice DataParallel::slice_of(const ParamRange& r, int tp_rank, const char* kind) const {
  io::FlatSlice s{kind + named_[r.param].first, r.begin, r.end};
  const TensorParallelLayout::Split& split = split_[r.param];
  if (split.dim >= 0) {
    const size_t dim = size_t(split.dim);
    s.box = named_[r.param].second.shape();
    s.offset.assign(s.box.size(), 0);
    s.offset[dim] = int64_t(tp_rank / split.replicas) * s.box[dim];
    if (s.offset[dim] + s.box[dim] > split.whole) {  // vocabulary padding (dim 0): the rows past it are not in the checkpoint
      const int64_t cols = named_[r.param].second.numel() / s.box[0];
      s.box[0] = std::max<int64_t>(split.whole - s.offset[0], 0);
      s.end = std::max(s.begin, std::min(s.end, s.box[0] * cols));
      if (s.box[0] == 0) s.box = s.offset = {};
    }
  }
  return s;
}

bool DataParallel::writes(int dp_rank, int tp_rank, const ParamRange& r) const {
  const TensorParallelLayout::Split& s = split_[r.param];
  return (sharded_ || dp_rank == 0) && !copy_[r.param] && tp_rank % (s.dim >= 0 ? s.replicas : tp_.size()) == 0 &&
         slice_of(r, tp_rank, "").end > r.begin;
}

std::vector<std::pair<io::FlatSlice, Tensor>> DataParallel::checkpoint_state() const {
  std::vector<std::pair<io::FlatSlice, Tensor>> out;
  const std::vector<ParamRange> mine = ranges(group_->rank());
  for (size_t i = 0; i < mine.size(); ++i) {
    if (!writes(group_->rank(), tp_.rank(), mine[i])) continue;
    const Tensor* state[] = {&pieces_[i], &opt_->exp_avg()[i], &opt_->exp_avg_sq()[i]};
    for (int k = 0; k < 3; ++k) {
      // A range cut short by vocabulary padding writes its start: the padding rows are not the model's.
      const io::FlatSlice part = slice_of(mine[i], tp_.rank(), kStateKinds[k]);
      out.emplace_back(part, ops::narrow(ops::reshape(*state[k], {state[k]->numel()}), 0, 0, part.end - part.begin));
    }
  }
  return out;
}

void DataParallel::load(const io::ShardedCheckpoint& ck) {
  for (const auto& [name, shape] : checkpoint_shapes()) {
    LOOM_CHECK(ck.has(name), "checkpoint: tensor {} is missing", name);
    LOOM_CHECK(ck.shapes().at(name) == shape, "checkpoint: tensor {} has shape {}, the model's is {}", name, ck.shapes().at(name), shape);
  }
  const std::vector<ParamRange> mine = ranges(group_->rank());
  for (size_t i = 0; i < mine.size(); ++i) {
    Tensor* state[] = {&pieces_[i], &opt_->exp_avg()[i], &opt_->exp_avg_sq()[i]};
    for (int k = 0; k < 3; ++k) {
      // A range cut short by vocabulary padding reads its start; the padding rows are zeros.
      const io::FlatSlice part = slice_of(mine[i], tp_.rank(), kStateKinds[k]);
      Tensor flat = ops::reshape(*state[k], {state[k]->numel()});
      Tensor head = ops::narrow(flat, 0, 0, part.end - part.begin), tail = ops::narrow(flat, 0, part.end - part.begin, flat.numel() - head.numel());
      if (head.numel() > 0) ck.read(part, head);
      if (tail.numel() > 0) std::memset(tail.data<float>(), 0, size_t(tail.numel()) * sizeof(float));
    }
  }
  gather_params();
}

Ddp::Ddp(nn::TransformerLM& model, std::shared_ptr<dist::Group> group, const DataParallelOptions& options)
    : DataParallel(model, std::move(group), false, options), bucket_of_(named_.size()) {
  LOOM_CHECK(options.bucket_mb > 0, "parallel.bucket_mb must be positive, got {}", options.bucket_mb);
  const auto limit = int64_t(options.bucket_mb * 1024 * 1024 / 4);
  for (size_t i = named_.size(); i-- > 0;) {
    const int64_t n = named_[i].second.numel();
    if (buckets_.empty() || (buckets_.back().numel > 0 && buckets_.back().numel + n > limit)) buckets_.emplace_back();
    buckets_.back().params.push_back(i);
    buckets_.back().numel += n;
    bucket_of_[i] = buckets_.size() - 1;
  }
  // Each gradient is a view into its bucket (PyTorch's gradient_as_bucket_view): backward
  // accumulates straight into the buffer the all-reduce sends, with no packing copies and no
  // second copy of the gradients. One rank needs no buckets: its backward keeps each fresh
  // gradient buffer as it is.
  for (Bucket& b : buckets_) {
    if (group_->size() == 1) break;
    b.flat = Tensor::zeros({b.numel});
    int64_t at = 0;
    for (size_t i : b.params) {
      Tensor& p = named_[i].second;
      p.set_grad(Tensor::from_storage(b.flat.storage(), p.shape(), DType::f32, at));
      at += p.numel();
    }
  }
  std::vector<Tensor> params;
  for (const auto& [name, p] : named_) params.push_back(p);
  init_optimizer(std::move(params), options.adamw);
  register_hooks();
}

std::vector<ParamRange> Ddp::ranges(int) const {
  std::vector<ParamRange> out;
  for (size_t i = 0; i < named_.size(); ++i) out.push_back({i, 0, named_[i].second.numel()});
  return out;
}

void Ddp::on_grad_ready(size_t param) {
  if (!sync_ || group_->size() == 1) return;
  Bucket& b = buckets_[bucket_of_[param]];
  LOOM_CHECK(!b.work, "data parallel: a second synchronised backward before finish() (inner micro-steps need set_sync(false))");
  LOOM_CHECK(named_[param].second.grad().storage() == b.flat.storage(), "data parallel: the gradient of {} was replaced; only "
             "DataParallel::zero_grad() may reset it", named_[param].first);
  ++b.ready;
  while (launched_ < buckets_.size() && buckets_[launched_].ready == buckets_[launched_].params.size()) launch(launched_++);
}

void Ddp::launch(size_t bucket) { buckets_[bucket].work = group_->all_reduce(buckets_[bucket].flat, dist::ReduceOp::sum); }

void Ddp::finish_reduction() {
  if (group_->size() == 1) return;
  for (; launched_ < buckets_.size(); ++launched_) launch(launched_);  // a backward that did not run through dp.backward()
  for (Bucket& b : buckets_) {
    b.work->wait();
    b.work.reset();
    b.ready = 0;
  }
  launched_ = 0;
}

void Ddp::zero_grad() {
  if (group_->size() == 1) return DataParallel::zero_grad();
  for (Bucket& b : buckets_) std::memset(b.flat.data<float>(), 0, size_t(b.numel) * 4);
}

}  // namespace loom::parallel
