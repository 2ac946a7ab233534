// Data parallelism (DDP, ZeRO stage 0): gradients are packed into buckets (about bucket_mb
// each) in the order backward produces them (reverse registration order), and each bucket's
// all-reduce starts on the group's communication thread as soon as its last gradient has been
// accumulated, overlapping the rest of the backward pass.
#pragma once

#include <memory>
#include <vector>

#include "loom/core/tensor.h"
#include "loom/dist/group.h"

namespace loom::parallel {

class DataParallel {
 public:
  // params: every trainable parameter (contiguous f32); their hooks are registered here.
  DataParallel(const std::vector<Tensor>& params, std::shared_ptr<dist::Group> group, double bucket_mb);
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;
  // false for the inner micro-steps of gradient accumulation: gradients only accumulate locally.
  void set_sync(bool sync) { sync_ = sync; }
  // Waits for every bucket (launching those whose parameters got no gradient) and leaves in each
  // parameter's grad the SUM over ranks. Call after the last micro-step's backward.
  void finish();
  size_t buckets() const { return buckets_.size(); }

 private:
  struct Bucket {
    std::vector<size_t> params;  // indices into params_
    int64_t numel = 0;
    Tensor flat;                 // (numel) packed gradients
    size_t ready = 0;
    std::shared_ptr<dist::Work> work;
  };
  void on_grad_ready(size_t param);
  void launch(Bucket& b);

  std::vector<Tensor> params_;
  std::vector<size_t> bucket_of_;  // per param
  std::vector<Bucket> buckets_;
  std::shared_ptr<dist::Group> group_;
  bool sync_ = true;
};

}  // namespace loom::parallel
