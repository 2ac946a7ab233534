// AdamW, gradient clipping and LR schedules.
#include "loom/optim/adamw.h"

#include <cmath>

#include "loom/backend/cpu/adamw.h"
#include "loom/ops/elementwise.h"

namespace loom::optim {

AdamW::AdamW(std::vector<Tensor> params, std::vector<bool> decay, AdamWConfig cfg)
    : params_(std::move(params)), decay_(std::move(decay)), cfg_(cfg) {
  LOOM_CHECK(params_.size() == decay_.size(), "adamw: {} params but {} decay flags", params_.size(), decay_.size());
  for (const Tensor& p : params_) {
    LOOM_CHECK(p.dtype() == DType::f32 && p.is_contiguous(), "adamw: parameters must be contiguous f32, got {} {}", dtype_name(p.dtype()),
               p.shape());
    m_.push_back(Tensor::zeros(p.shape()));
    v_.push_back(Tensor::zeros(p.shape()));
  }
}

void AdamW::step(double lr, double grad_scale) {
  ++step_;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor g = params_[i].grad();
    if (!g.defined()) continue;
    LOOM_CHECK(g.is_contiguous() && g.shape() == params_[i].shape(), "adamw: gradient {} does not fit param {}", g.shape(),
               params_[i].shape());
    cpu::adamw_step(params_[i].data<float>(), g.data<float>(), m_[i].data<float>(), v_[i].data<float>(), params_[i].numel(), float(lr),
                    float(cfg_.beta1), float(cfg_.beta2), float(cfg_.eps), decay_[i] ? float(cfg_.weight_decay) : 0.0f, step_, float(grad_scale));
  }
}

void AdamW::zero_grad() {
  for (Tensor& p : params_) p.zero_grad();
}

double grad_sq_sum(const std::vector<Tensor>& params) {
  constexpr int64_t kChunk = 1 << 16;
  double sq = 0;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    const float* pg = g.data<float>();
    const int64_t n = g.numel(), chunks = (n + kChunk - 1) / kChunk;
    std::vector<double> partial(size_t(chunks), 0.0);
#pragma omp parallel for if (chunks > 1)
    for (int64_t c = 0; c < chunks; ++c) {
      // 32 running sums, in a fixed order: independent additions the compiler vectorises into
      // enough accumulators to hide the add latency (8 sums were latency-bound at a third of the
      // memory bandwidth).
      constexpr int kLanes = 32;
      double lane[kLanes] = {};
      const int64_t end = std::min(n, (c + 1) * kChunk);
      int64_t i = c * kChunk;
      for (; i + kLanes <= end; i += kLanes)
        for (int k = 0; k < kLanes; ++k) lane[k] += double(pg[i + k]) * double(pg[i + k]);
      for (; i < end; ++i) lane[0] += double(pg[i]) * double(pg[i]);
      for (int w = kLanes / 2; w > 0; w /= 2)
        for (int k = 0; k < w; ++k) lane[k] += lane[k + w];
      partial[size_t(c)] = lane[0];
    }
    for (double s : partial) sq += s;
  }
  return sq;
}

double clip_factor(double norm, double max_norm) {
  LOOM_CHECK(std::isfinite(norm), "optimizer: gradient norm is {} (a NaN or infinity in the gradients)", norm);
  return max_norm > 0 && norm > max_norm ? max_norm / (norm + 1e-6) : 1.0;
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm, double sq) {
  const double norm = std::sqrt(sq), factor = clip_factor(norm, max_norm);
  if (factor != 1.0)
    for (const Tensor& p : params) {
      Tensor g = p.grad();
      if (g.defined()) ops::mul_(g, factor);
    }
  return norm;
}

double Schedule::at(int64_t step) const {
  const double min_lr = lr * min_lr_ratio;
  if (step <= warmup) return lr * double(step) / double(std::max<int64_t>(warmup, 1));
  if (kind == "constant") return lr;
  const double span = double(std::max<int64_t>(total - warmup, 1));
  const double t = std::min(1.0, double(step - warmup) / span);
  if (kind == "cosine") return min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(M_PI * t));
  LOOM_CHECK(kind == "wsd", "optimizer.schedule: unknown schedule '{}' (constant, cosine, wsd)", kind);
  const double decay_start = 1.0 - decay_fraction;
  if (t <= decay_start) return lr;
  return lr - (lr - min_lr) * (t - decay_start) / std::max(decay_fraction, 1e-12);
}

}  // namespace loom::optim
