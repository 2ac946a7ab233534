// The building-block modules: Linear, Embedding and the two norms. Parameters are created
// uninitialised-to-zero here; the model's init() fills them (GPT-2 rules).
#pragma once

#include "loom/nn/module.h"
#include "loom/ops/matmul.h"
#include "loom/ops/nn.h"

namespace loom::nn {

class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, bool bias) {
    weight = register_parameter("weight", Tensor::zeros({out, in}));  // (out, in)
    if (bias) this->bias = register_parameter("bias", Tensor::zeros({out}));
  }
  // Virtual: module surgery puts derived linears (tensor-parallel, LoRA) in a Linear's place.
  virtual Tensor forward(const Tensor& x) const { return ops::linear(x, weight, bias); }
  Tensor weight, bias;
};

class Embedding : public Module {
 public:
  Embedding(int64_t n, int64_t dim) { weight = register_parameter("weight", Tensor::zeros({n, dim})); }  // (n, dim)
  Tensor forward(const Tensor& ids) const { return ops::embedding(ids, weight); }
  Tensor weight;
};

// LayerNorm (weight + bias) or RMSNorm (weight only), chosen by the model config.
class Norm : public Module {
 public:
  Norm(int64_t dim, bool rms, double eps) : rms_(rms), eps_(eps) {
    weight = register_parameter("weight", Tensor::ones({dim}));
    if (!rms) bias = register_parameter("bias", Tensor::zeros({dim}));
  }
  Tensor forward(const Tensor& x) const { return rms_ ? ops::rms_norm(x, weight, eps_) : ops::layer_norm(x, weight, bias, eps_); }
  Tensor weight, bias;

 private:
  bool rms_;
  double eps_;
};

}  // namespace loom::nn
