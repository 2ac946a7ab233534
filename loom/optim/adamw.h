// AdamW with decoupled weight decay (PyTorch semantics) on the fused CPU kernel, global-norm
// gradient clipping, and the learning-rate schedules (constant, cosine, warmup-stable-decay).
#pragma once

#include <string>
#include <vector>

#include "loom/core/tensor.h"

namespace loom::optim {

struct AdamWConfig {
  double lr = 6e-4, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
};

class AdamW {
 public:
  // Weight decay applies to params with decay[i] true (matrices and embeddings, by convention).
  AdamW(std::vector<Tensor> params, std::vector<bool> decay, AdamWConfig cfg);
  // One update with learning rate lr, of the gradients times grad_scale (clipping); params
  // without a gradient are skipped.
  void step(double lr, double grad_scale = 1.0);
  void zero_grad();
  const std::vector<Tensor>& params() const { return params_; }
  int64_t steps() const { return step_; }
  // State for checkpoints: m and v per param, in param order, and the step count.
  std::vector<Tensor>& exp_avg() { return m_; }
  std::vector<Tensor>& exp_avg_sq() { return v_; }
  void set_steps(int64_t s) { step_ = s; }

 private:
  std::vector<Tensor> params_, m_, v_;
  std::vector<bool> decay_;
  AdamWConfig cfg_;
  int64_t step_ = 0;
};

// Sum of the squares of all gradients, in fixed-size chunks summed in order, so the result
// does not depend on the thread count.
double grad_sq_sum(const std::vector<Tensor>& params);
// The factor that brings a global gradient norm down to max_norm (1 when it is below, or when
// max_norm is 0, no clipping). Throws if the norm is not finite.
double clip_factor(double norm, double max_norm);
// Scales all gradients so their global L2 norm, sqrt(sq_sum), is at most max_norm and returns
// that norm. sq_sum may cover more than params (the shards of other ranks).
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm, double sq_sum);
inline double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  return clip_grad_norm(params, max_norm, grad_sq_sum(params));
}

struct Schedule {
  std::string kind = "cosine";  // constant | cosine | wsd
  double lr = 6e-4, min_lr_ratio = 0.1;
  int64_t warmup = 0, total = 1;
  double decay_fraction = 0.2;  // wsd: the last fraction of steps decays linearly to min_lr
  // Learning rate of optimizer update `step` (counted from 1).
  double at(int64_t step) const;
};

}  // namespace loom::optim
