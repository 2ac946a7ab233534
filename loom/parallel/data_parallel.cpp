// The data-parallel base (optimizer over this rank's pieces, clipping, checkpoint share) and
// DDP's bucketed, overlapped gradient all-reduce.
#include "loom/parallel/data_parallel.h"

#include <cmath>
#include <cstring>
#include <unordered_set>

#include "loom/autograd/engine.h"

#include "loom/parallel/zero.h"

namespace loom::parallel {

std::unique_ptr<DataParallel> DataParallel::create(nn::TransformerLM& model, std::shared_ptr<dist::Group> group,
                                                   const DataParallelOptions& options) {
  LOOM_CHECK(options.zero >= 0 && options.zero <= 3, "parallel.zero must be 0, 1, 2 or 3, got {}", options.zero);
  if (options.zero == 0) return std::make_unique<Ddp>(model, std::move(group), options);
  return std::make_unique<Zero>(model, std::move(group), options);
}

DataParallel::DataParallel(nn::TransformerLM& model, std::shared_ptr<dist::Group> group, bool sharded)
    : named_(model.named_parameters()), group_(std::move(group)), sharded_(sharded) {
  for (const auto& [name, p] : named_)
    LOOM_CHECK(p.dtype() == DType::f32 && p.is_contiguous(), "data parallel: parameter {} must be contiguous f32", name);
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

void DataParallel::backward(const Tensor& loss, bool sync) {
  sync_ = sync;
  const std::unordered_set<const TensorImpl*> reached = autograd::reachable_leaves(loss);
  for (size_t i = 0; i < named_.size(); ++i)
    if (!reached.count(named_[i].second.impl())) on_grad_ready(i);
  loss.backward();
}

double DataParallel::clip_grad_norm(double max_norm) {
  double sq = optim::grad_sq_sum(pieces_);
  if (sharded_ && group_->size() > 1) {
    Tensor t = Tensor::full({1}, sq, DType::f64);
    group_->all_reduce(t, dist::ReduceOp::sum)->wait();
    sq = t.item();
  }
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

std::map<std::string, Shape> DataParallel::checkpoint_shapes() const {
  std::map<std::string, Shape> out;
  for (const auto& [name, p] : named_)
    for (const char* kind : {"param.", "exp_avg.", "exp_avg_sq."}) out.emplace(kind + name, p.shape());
  return out;
}

std::vector<io::FlatSlice> DataParallel::checkpoint_slices(int rank) const {
  std::vector<io::FlatSlice> out;
  if (!sharded_ && rank != 0) return out;  // DDP replicas: rank 0 writes for all
  for (const ParamRange& r : ranges(rank))
    for (const char* kind : {"param.", "exp_avg.", "exp_avg_sq."}) out.push_back({kind + named_[r.param].first, r.begin, r.end});
  return out;
}

std::vector<std::pair<io::FlatSlice, Tensor>> DataParallel::checkpoint_state() const {
  std::vector<io::FlatSlice> slices = checkpoint_slices(group_->rank());
  std::vector<std::pair<io::FlatSlice, Tensor>> out;
  for (size_t i = 0; i < slices.size(); ++i) {
    const size_t piece = i / 3;
    const Tensor& t = i % 3 == 0 ? pieces_[piece] : i % 3 == 1 ? opt_->exp_avg()[piece] : opt_->exp_avg_sq()[piece];
    out.emplace_back(slices[i], t);
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
    const std::string& name = named_[mine[i].param].first;
    ck.read("param." + name, mine[i].begin, mine[i].end, pieces_[i]);
    ck.read("exp_avg." + name, mine[i].begin, mine[i].end, opt_->exp_avg()[i]);
    ck.read("exp_avg_sq." + name, mine[i].begin, mine[i].end, opt_->exp_avg_sq()[i]);
  }
  gather_params();
}

Ddp::Ddp(nn::TransformerLM& model, std::shared_ptr<dist::Group> group, const DataParallelOptions& options)
    : DataParallel(model, std::move(group), false), bucket_of_(named_.size()) {
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

void Ddp::finish() {
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
