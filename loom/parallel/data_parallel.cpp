// Bucketed, overlapped gradient all-reduce.
#include "loom/parallel/data_parallel.h"

#include <cstring>

#include "loom/ops/elementwise.h"

namespace loom::parallel {

DataParallel::DataParallel(const std::vector<Tensor>& params, std::shared_ptr<dist::Group> group, double bucket_mb)
    : params_(params), bucket_of_(params.size()), group_(std::move(group)) {
  LOOM_CHECK(bucket_mb > 0, "parallel.bucket_mb must be positive, got {}", bucket_mb);
  const auto limit = int64_t(bucket_mb * 1024 * 1024 / 4);
  for (size_t i = params_.size(); i-- > 0;) {
    LOOM_CHECK(params_[i].dtype() == DType::f32 && params_[i].is_contiguous(), "data parallel: parameters must be contiguous f32");
    if (buckets_.empty() || (buckets_.back().numel > 0 && buckets_.back().numel + params_[i].numel() > limit)) buckets_.emplace_back();
    buckets_.back().params.push_back(i);
    buckets_.back().numel += params_[i].numel();
    bucket_of_[i] = buckets_.size() - 1;
  }
  for (Bucket& b : buckets_) b.flat = Tensor::empty({b.numel});
  for (size_t i = 0; i < params_.size(); ++i) params_[i].register_post_accumulate_hook([this, i](const Tensor&) { on_grad_ready(i); });
}

void DataParallel::on_grad_ready(size_t param) {
  if (!sync_ || group_->size() == 1) return;
  Bucket& b = buckets_[bucket_of_[param]];
  if (++b.ready == b.params.size()) launch(b);
}

void DataParallel::launch(Bucket& b) {
  float* flat = b.flat.data<float>();
  for (size_t i : b.params) {
    Tensor g = params_[i].grad();
    const int64_t n = params_[i].numel();
    if (g.defined()) std::memcpy(flat, g.data<float>(), size_t(n) * 4);
    else std::memset(flat, 0, size_t(n) * 4);
    flat += n;
  }
  b.work = group_->all_reduce(b.flat, dist::ReduceOp::sum);
}

void DataParallel::finish() {
  if (group_->size() == 1) return;
  for (Bucket& b : buckets_)
    if (!b.work) launch(b);  // some parameter of it received no gradient this step
  for (Bucket& b : buckets_) {
    b.work->wait();
    const float* flat = b.flat.data<float>();
    for (size_t i : b.params) {
      Tensor g = params_[i].grad();
      if (!g.defined()) {
        g = Tensor::empty(params_[i].shape());
        params_[i].set_grad(g);
      }
      std::memcpy(g.data<float>(), flat, size_t(params_[i].numel()) * 4);
      flat += params_[i].numel();
    }
    b.work.reset();
    b.ready = 0;
  }
}

}  // namespace loom::parallel
