// LoRA as PEFT defines it: y = W x + s · B A dropout(x) with A (r, in) ~ U(±1/√in), B (out, r) = 0
// and s = α / r (α / √r with rsLoRA). The adapted linear keeps the base's weight and bias under
// their names (frozen), so state dicts, checkpoints and Hugging Face names of the base stay as
// they are; the adapter adds `<path>.lora_A.weight` and `<path>.lora_B.weight`. A base that
// registers no parameters (a quantised one, QLoRA) stays without them.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "loom/nn/layers.h"
#include "loom/nn/transformer.h"

namespace loom::nn {

struct LoraConfig {
  int64_t r = 0;  // 0: no LoRA
  double alpha = 16;
  double dropout = 0;  // PEFT's lora_dropout: the probability of zeroing an element of the adapter's input, in [0, 1)
  // Hugging Face module names, as PEFT's target_modules ("q_proj", "self_attn.v_proj", ...: a
  // module whose HF path ends in one matches), or "all-linear" (every linear but the head).
  std::vector<std::string> targets = {"all-linear"};
  bool rslora = false;
  double scale() const;
};

class LoraLinear : public Linear {
 public:
  // Adapts `base` (kept as it is, its weight and bias shared; registered here only where the
  // base registers them); A drawn from `seed`'s stream, the dropout masks from a stream of their
  // own derived from `seed`.
  LoraLinear(std::shared_ptr<Linear> base, const LoraConfig& cfg, uint64_t seed);
  // The adapter `like` (its scale, dropout, masks' stream and position) over other parts: a
  // tensor-parallel rank's part of the base, of A and of B (tensor_parallel.h), whose input is
  // columns [in_offset, in_offset + base's in) of the adapted layer's in_whole input features.
  LoraLinear(std::shared_ptr<Linear> base, std::shared_ptr<Linear> A, std::shared_ptr<Linear> B, const LoraLinear& like, int64_t in_whole,
             int64_t in_offset);
  // W x + s · B A dropout(x), x of shape (sequences, ...). Dropout acts only while
  // `first_sequence` is set (a training forward, see set_lora_dropout): element e of row b's input
  // is kept, times 1 / (1 - p), when the uniform at (dropout_seed, (first_sequence + b) · n + e)
  // is below 1 - p, n being the elements of a row and e counted in the whole input (in_whole
  // features, this part's at in_offset); otherwise (evaluation, generation) y = W x + s · B A x.
  Tensor forward(const Tensor& x) const override;
  // W + s · B A, W the base's dense weight (dequantised for a quantised base): merging.
  Tensor dense_weight() const override;

  std::shared_ptr<Linear> base, lora_A, lora_B;
  double scale, dropout;
  uint64_t dropout_seed;
  int64_t in_whole, in_offset;
  std::optional<int64_t> first_sequence;

 private:
  LoraLinear(std::shared_ptr<Linear> base, std::shared_ptr<Linear> A, std::shared_ptr<Linear> B, double scale, double dropout,
             uint64_t dropout_seed, int64_t in_whole, int64_t in_offset);
};

// The Hugging Face module path of each Linear of TransformerLM(c), as PEFT names the modules of
// transformers' *ForCausalLM ("layers.0.attn.wq" -> "model.layers.0.self_attn.q_proj") and
// GPT2LMHeadModel ("layers.0.mlp.fc" -> "transformer.h.0.mlp.c_fc"); "" for one that is part of
// a fused HF tensor (GPT-2's c_attn), which LoRA cannot adapt on its own.
std::map<std::string, std::string> hf_module_paths(const models::ModelConfig& c);

// Replaces each target Linear of `model` with a LoraLinear (A from `seed`; each module its own
// stream) and freezes every other parameter. Returns the adapted Loom module paths; an error
// when no module matches a target.
std::vector<std::string> apply_lora(TransformerLM& model, const LoraConfig& cfg, uint64_t seed);

// The model's state dict with each LoraLinear merged into its weight (W + s·B·A), every
// quantised linear dequantised (its weight and bias, which are no parameters, included) and no
// LoRA tensors: the plain model that computes what the adapted one does.
std::map<std::string, Tensor> merged_state_dict(const Module& model);

// Turns LoRA dropout on for the training forward of one batch whose first row is sequence
// `first` of the data stream (data::Batch::first), or off (nullopt), in every LoraLinear of `model`.
// Masks depend only on (the apply_lora seed, the module, the sequence's index in the stream, the
// element): not on how a step is split into ranks and micro-batches, the same when a resumed run
// sees the sequence, and the same when activation recompute reruns the forward in backward, as
// long as the setting stays until the batch's backward is done. Dropout with an unknown position
// (first < 0) is an error.
void set_lora_dropout(Module& model, std::optional<int64_t> first);

// Freezes (requires_grad false) every parameter whose name matches none of `patterns`
// (training.trainable: a pattern matches a name that equals it, starts with it followed by
// '.', or contains it between dots: "layers.11", "norm", "ln_f.weight").
void freeze_all_but(Module& model, const std::vector<std::string>& patterns);

}  // namespace loom::nn
