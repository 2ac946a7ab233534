// Vocabulary-parallel cross-entropy: per-row statistics reduced over the group, local gradient.
#include "loom/parallel/vocab_parallel.h"

#include <cmath>
#include <limits>

#include "loom/autograd/function.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/shape.h"
#include "loom/parallel/mappings.h"

namespace loom::parallel {

Tensor vocab_parallel_cross_entropy(const Tensor& logits_in, const Tensor& targets_in, const std::shared_ptr<dist::Group>& group,
                                    int64_t vocab_size, int64_t ignore_index, ops::Reduction reduction) {
  LOOM_CHECK(logits_in.dtype() == DType::f32, "vocab_parallel_cross_entropy: logits must be f32, got {}", dtype_name(logits_in.dtype()));
  const Shape lead(logits_in.shape().begin(), logits_in.shape().end() - 1);
  LOOM_CHECK(targets_in.shape() == lead, "vocab_parallel_cross_entropy: targets of shape {} do not fit logits of shape {}",
             targets_in.shape(), logits_in.shape());
  const int64_t Vl = logits_in.size(-1), start = group->rank() * Vl, N = numel_of(lead);
  const int64_t local_end = std::clamp<int64_t>(vocab_size - start, 0, Vl);  // real columns of this slice
  LOOM_CHECK(vocab_size >= 1 && vocab_size <= Vl * group->size(), "vocab_parallel_cross_entropy: vocab_size {} must be in [1, {}]",
             vocab_size, Vl * group->size());
  Tensor logits = ops::contiguous(logits_in.detach());
  Tensor targets = ops::contiguous(ops::cast(targets_in, DType::i64));
  const float* pl = logits.data<float>();
  const int64_t* pt = targets.data<int64_t>();
  for (int64_t i = 0; i < N; ++i)
    LOOM_CHECK(pt[i] == ignore_index || (pt[i] >= 0 && pt[i] < vocab_size),
               "vocab_parallel_cross_entropy: target {} at position {} is outside the vocabulary of {}", pt[i], i, vocab_size);

  // Per row: the max over the whole vocabulary, then the sum of exp(logit - max) and the target's logit.
  Tensor row_max = Tensor::empty({N}, DType::f32), sums = Tensor::empty({2, N}, DType::f32);
  float* pm = row_max.data<float>();
  float* ps = sums.data<float>();  // [0, N): sums of exponentials, [N, 2N): target logits
#pragma omp parallel for if (N * Vl > (1 << 16))
  for (int64_t i = 0; i < N; ++i) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < local_end; ++j) m = std::max(m, pl[i * Vl + j]);
    pm[i] = m;
  }
  if (group->size() > 1) group->all_reduce(row_max, dist::ReduceOp::max)->wait();
#pragma omp parallel for if (N * Vl > (1 << 16))
  for (int64_t i = 0; i < N; ++i) {
    double s = 0;
    for (int64_t j = 0; j < local_end; ++j) s += std::exp(double(pl[i * Vl + j]) - double(pm[i]));
    ps[i] = float(s);
    const int64_t t = pt[i] - start;
    ps[N + i] = pt[i] != ignore_index && t >= 0 && t < local_end ? pl[i * Vl + t] : 0.0f;
  }
  if (group->size() > 1) group->all_reduce(sums, dist::ReduceOp::sum)->wait();
  Tensor lse = Tensor::empty({N}, DType::f32), loss = Tensor::empty(lead, DType::f32);
  float* plse = lse.data<float>();
  float* ploss = loss.data<float>();
  int64_t count = 0;
  for (int64_t i = 0; i < N; ++i) {
    plse[i] = pm[i] + std::log(ps[i]);
    const bool counted = pt[i] != ignore_index;
    ploss[i] = counted ? plse[i] - ps[N + i] : 0.0f;
    count += counted;
  }
  const double scale = reduction == ops::Reduction::mean ? 1.0 / double(std::max<int64_t>(count, 1)) : 1.0;
  Tensor out = loss;
  if (reduction != ops::Reduction::none) {
    double total = 0;
    for (int64_t i = 0; i < N; ++i) total += ploss[i];
    out = Tensor::full({}, total * scale, DType::f32);
  }
  autograd::attach(out, "vocab_parallel_cross_entropy", {logits_in},
                   [logits, targets, lse, N, Vl, start, local_end, ignore_index, scale, reduction](const Tensor& g) {
                     Tensor dloss = reduction == ops::Reduction::none ? ops::contiguous(g) : Tensor::full({N}, g.item() * scale, DType::f32);
                     Tensor d = Tensor::zeros(logits.shape(), DType::f32);
                     const float *pl = logits.data<float>(), *plse = lse.data<float>(), *pg = dloss.data<float>();
                     const int64_t* pt = targets.data<int64_t>();
                     float* pd = d.data<float>();
#pragma omp parallel for if (N * Vl > (1 << 16))
                     for (int64_t i = 0; i < N; ++i) {
                       if (pt[i] == ignore_index) continue;
                       for (int64_t j = 0; j < local_end; ++j) pd[i * Vl + j] = std::exp(pl[i * Vl + j] - plse[i]) * pg[i];
                       const int64_t t = pt[i] - start;
                       if (t >= 0 && t < local_end) pd[i * Vl + t] -= pg[i];
                     }
                     return std::vector<Tensor>{ops::reshape(d, logits.shape())};
                   });
  return out;
}

int64_t vocab_rows_per_rank(int64_t padded_vocab, int size) {
  const int64_t multiple = 128 * int64_t(size);
  return (padded_vocab + multiple - 1) / multiple * 128;
}

namespace {

// Rank `rank`'s block of `rows` rows of a whole (V, C) weight, zeros past V.
Tensor row_block(const Tensor& whole, int64_t rows, int rank) {
  autograd::NoGradGuard no_grad;
  Tensor block = Tensor::zeros({rows, whole.size(1)});
  const int64_t start = int64_t(rank) * rows, n = std::clamp<int64_t>(whole.size(0) - start, 0, rows);
  if (n > 0) {
    Tensor dst = ops::narrow(block, 0, 0, n);
    ops::copy_(dst, ops::narrow(whole, 0, start, n));
  }
  return block;
}

}  // namespace

VocabParallelEmbedding::VocabParallelEmbedding(const nn::Embedding& whole, std::shared_ptr<dist::Group> group, bool sequence_parallel)
    : nn::Embedding(vocab_rows_per_rank(whole.weight.size(0), group->size()), whole.weight.size(1), !whole.weight.has_memory()),
      group_(std::move(group)),
      sequence_parallel_(sequence_parallel) {
  if (!whole.weight.has_memory()) return;
  autograd::NoGradGuard no_grad;
  ops::copy_(weight, row_block(whole.weight, weight.size(0), group_->rank()));
}

Tensor VocabParallelEmbedding::forward(const Tensor& ids) const {
  const int64_t rows = weight.size(0), start = group_->rank() * rows;
  std::vector<int64_t> local = ids.to_ints();
  std::vector<double> mask(local.size());
  for (size_t i = 0; i < local.size(); ++i) {
    const bool mine = local[i] >= start && local[i] < start + rows;
    mask[i] = mine ? 1.0 : 0.0;
    local[i] = mine ? local[i] - start : 0;
  }
  Shape mask_shape = ids.shape();
  mask_shape.push_back(1);
  Tensor partial = ops::mul(ops::embedding(Tensor::from_ints(local, ids.shape()), weight), Tensor::from_vector(mask, mask_shape));
  return sequence_parallel_ ? reduce_scatter_to(partial, group_, 1) : reduce_from(partial, group_);
}

VocabParallelHead::VocabParallelHead(Tensor tied, const nn::LMHead& whole, std::shared_ptr<dist::Group> group)
    : nn::LMHead(tied, vocab_rows_per_rank(whole.weight.size(0), group->size()), whole.weight.size(1), whole.vocab_size,
                 !whole.weight.has_memory()),
      group_(std::move(group)) {
  if (!tied.defined() && whole.weight.has_memory()) {
    autograd::NoGradGuard no_grad;
    ops::copy_(weight, row_block(whole.weight, weight.size(0), group_->rank()));
  }
}

Tensor VocabParallelHead::loss(const Tensor& logits, const Tensor& targets, ops::Reduction reduction) const {
  return vocab_parallel_cross_entropy(logits, targets, group_, vocab_size, -100, reduction);
}

}  // namespace loom::parallel
