// Hugging Face name maps: which HF tensor holds which Loom parameters for each family (GPT-2,
// LLaMA, Qwen2, Qwen3, Mistral), the conversions between a TransformerLM state dict and HF tensors,
// and config.json <-> ModelConfig.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "loom/core/tensor.h"
#include "loom/models/config.h"

namespace loom::models {

// One HF tensor. Its Loom parts are stacked along dim 0 (GPT-2's fused q|k|v c_attn has
// three); then rows past vocab_size are dropped (vocab_padded) and a Conv1D weight, which HF
// stores [in, out], is transposed.
struct HfTensor {
  std::string hf_name;
  std::vector<std::pair<std::string, Shape>> parts;  // Loom name and shape
  bool vocab_padded = false;                         // Loom rows padded_vocab, HF rows vocab_size
  bool conv1d = false;
  Shape hf_shape;
};

// Throws naming the field when c cannot be written as its family's HF model.
void check_hf_compatible(const ModelConfig& c);
// Every Loom parameter of TransformerLM(c) exactly once, in HF tensors; the tied head has none.
std::vector<HfTensor> hf_tensor_map(const ModelConfig& c);
// The shapes of TransformerLM(c).state_dict(), without building the model.
std::map<std::string, Shape> loom_parameter_shapes(const ModelConfig& c);

// Loom state dict -> HF tensors. Every parameter must be present with its shape; extras are
// an error. Results may alias the inputs.
std::map<std::string, Tensor> to_hf_tensors(const ModelConfig& c, const std::map<std::string, Tensor>& state);
// HF tensors -> views of them under Loom names, in the files' dtype, nothing copied: each Loom
// parameter's rows of its HF tensor (transposed for Conv1D; a vocabulary-padded one stops at
// vocab_size). A missing, extra or mis-shaped tensor is an error naming it, as below.
std::map<std::string, Tensor> hf_views(const ModelConfig& c, const std::map<std::string, Tensor>& hf);
// HF tensors (any float dtype) -> f32 Loom state dict, vocab padding rows zero. Accepts GPT-2's
// optional "transformer." prefix; ignores attention mask buffers, rotary inv_freq and a tied
// lm_head.weight. A missing, extra or mis-shaped tensor is an error naming it.
std::map<std::string, Tensor> from_hf_tensors(const ModelConfig& c, const std::map<std::string, Tensor>& hf);

// config.json <-> ModelConfig. Settings Loom cannot run (rope_scaling, another activation,
// biases beyond the family's, GPT-2 attention rescaling) are refused rather than ignored; a
// sliding window caps max_seq_len at the window, where full attention gives the same result.
ModelConfig config_from_hf_json(const nlohmann::json& j);
nlohmann::json hf_config_json(const ModelConfig& c);

}  // namespace loom::models
