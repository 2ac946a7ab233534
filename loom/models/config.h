// ModelConfig: the one description that covers GPT-2 and the LLaMA family (LLaMA, Qwen2, Qwen3,
// Mistral shapes) for the generic TransformerLM, plus the named presets.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace loom::models {

struct ModelConfig {
  std::string family = "gpt2";  // "gpt2" | "llama" | "qwen2" | "qwen3" | "mistral": selects the HF name map
  int64_t vocab_size = 50257;
  int64_t padded_vocab = 50304;  // rows of the embedding; logits past vocab_size are padding
  int64_t n_layer = 12, n_head = 12, n_kv_head = 12, n_embd = 768;
  int64_t head_dim = 64;        // D: may differ from n_embd / n_head (q/o projections are n_head·D wide)
  int64_t intermediate = 3072;  // MLP hidden size
  int64_t max_seq_len = 1024;
  bool rms_norm = false;        // else LayerNorm with bias
  double norm_eps = 1e-5;
  bool rope = false;            // else learned absolute positions
  double rope_theta = 10000.0;
  bool swiglu = false;          // else GELU(tanh) MLP
  bool linear_bias = true;      // biases on every linear (GPT-2)
  bool qkv_bias = false;        // biases on q/k/v only (Qwen2)
  bool qk_norm = false;         // RMSNorm (weight (D), eps norm_eps) of each head's q and k before RoPE (Qwen3)
  bool tied_head = true;

  // GPT-2 1/sqrt(2L) scaling of the residual projections' init std.
  double init_std = 0.02;
  void validate() const;  // throws naming the bad field
};

ModelConfig preset(const std::string& name);  // throws listing the known names
std::vector<std::string> preset_names();
// Rounds up to a multiple of 128 (llm.c's Vp).
inline int64_t pad_vocab(int64_t v) { return (v + 127) / 128 * 128; }

}  // namespace loom::models
