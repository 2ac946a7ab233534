// The building-block modules: Linear, Embedding and the two norms. Parameters are created
// zero (norm weights one) here, or deferred — shaped, without memory — for a model that is cut
// up (tensor/pipeline parallelism) before any memory is spent; the model's init() fills them.
#pragma once

#include "loom/nn/module.h"
#include "loom/ops/matmul.h"
#include "loom/ops/nn.h"

namespace loom::nn {

class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, bool bias, bool defer = false) {
    weight = register_parameter("weight", param({out, in}, 0.0, defer));  // (out, in)
    if (bias) this->bias = register_parameter("bias", param({out}, 0.0, defer));
  }
  // Virtual: module surgery puts derived linears (tensor-parallel, LoRA) in a Linear's place.
  virtual Tensor forward(const Tensor& x) const { return ops::linear(x, weight, bias); }
  // The (out, in) weight this linear computes with, as values: the parameter itself here, the
  // dequantised weight of a quantised linear, W + s·B·A of a LoRA one (merging, checking).
  virtual Tensor dense_weight() const { return weight; }
  Tensor weight, bias;

 protected:
  // A linear over existing tensors (a derived linear that keeps another's weights under the
  // same names: LoRA); an undefined tensor is not registered (a quantised base registers none).
  Linear(Tensor w, Tensor b) {
    if (w.defined()) weight = register_parameter("weight", std::move(w));
    if (b.defined()) bias = register_parameter("bias", std::move(b));
  }
};

class Embedding : public Module {
 public:
  Embedding(int64_t n, int64_t dim, bool defer = false) { weight = register_parameter("weight", param({n, dim}, 0.0, defer)); }  // (n, dim)
  virtual Tensor forward(const Tensor& ids) const { return ops::embedding(ids, weight); }  // virtual: see Linear
  Tensor weight;
};

// The output layer and its loss: logits = h·weightᵀ over the padded vocabulary (weight:
// (padded_vocab, C), its own parameter or the token embedding's when tied), and cross-entropy
// over the first vocab_size columns (targets of ignore index -100 count for nothing).
// Tensor parallelism puts a vocabulary-parallel head in its place.
class LMHead : public Module {
 public:
  // weight: the tied embedding's, or undefined for a head of its own of that many rows.
  LMHead(Tensor tied, int64_t padded_vocab, int64_t dim, int64_t vocab_size, bool defer = false) : vocab_size(vocab_size) {
    weight = tied.defined() ? tied : register_parameter("weight", param({padded_vocab, dim}, 0.0, defer));
  }
  virtual Tensor forward(const Tensor& h) const { return ops::linear(h, weight); }
  virtual Tensor loss(const Tensor& logits, const Tensor& targets, ops::Reduction reduction) const {
    return ops::cross_entropy(logits, targets, -100, reduction, vocab_size);
  }
  Tensor weight;
  int64_t vocab_size;
};

// LayerNorm (weight + bias) or RMSNorm (weight only), chosen by the model config.
class Norm : public Module {
 public:
  Norm(int64_t dim, bool rms, double eps, bool defer = false) : rms_(rms), eps_(eps) {
    weight = register_parameter("weight", param({dim}, 1.0, defer));
    if (!rms) bias = register_parameter("bias", param({dim}, 0.0, defer));
  }
  virtual Tensor forward(const Tensor& x) const { return apply(x, weight, bias); }  // virtual: see Linear
  bool rms() const { return rms_; }
  double eps() const { return eps_; }
  Tensor weight, bias;

 protected:
  // The norm of x with these parameters (the module's own, or views of them).
  Tensor apply(const Tensor& x, const Tensor& w, const Tensor& b) const { return rms_ ? ops::rms_norm(x, w, eps_) : ops::layer_norm(x, w, b, eps_); }

 private:
  bool rms_;
  double eps_;
};

}  // namespace loom::nn
