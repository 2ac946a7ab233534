// Presets: GPT-2 sizes as OpenAI released them, LLaMA-family shapes (LLaMA, Qwen2, Qwen3,
// Mistral) as their HF configs give them, and tiny shapes for tests.
#include "loom/models/config.h"

#include <fmt/ranges.h>

#include <functional>
#include <map>

#include "loom/core/error.h"

namespace loom::models {

namespace {

ModelConfig gpt2(int64_t L, int64_t H, int64_t C, int64_t V = 50257, int64_t T = 1024) {
  ModelConfig c;
  c.family = "gpt2";
  c.vocab_size = V;
  c.padded_vocab = pad_vocab(V);
  c.n_layer = L;
  c.n_head = c.n_kv_head = H;
  c.n_embd = C;
  c.head_dim = C / H;
  c.intermediate = 4 * C;
  c.max_seq_len = T;
  return c;
}

// D: the head size when it is not C / H (Qwen3's), else 0.
ModelConfig llama(const std::string& family, int64_t L, int64_t H, int64_t Hkv, int64_t C, int64_t I, int64_t V, double theta, bool tied,
                  int64_t T, int64_t D = 0) {
  ModelConfig c;
  c.family = family;
  c.vocab_size = V;
  c.padded_vocab = V;
  c.n_layer = L;
  c.n_head = H;
  c.n_kv_head = Hkv;
  c.n_embd = C;
  c.head_dim = D > 0 ? D : C / H;
  c.intermediate = I;
  c.max_seq_len = T;
  c.rms_norm = c.rope = c.swiglu = true;
  c.norm_eps = 1e-5;
  c.rope_theta = theta;
  c.linear_bias = false;
  c.qkv_bias = family == "qwen2";
  c.qk_norm = family == "qwen3";
  c.tied_head = tied;
  if (family == "qwen2" || family == "qwen3") c.norm_eps = 1e-6;
  return c;
}

const std::map<std::string, std::function<ModelConfig()>>& presets() {
  static const std::map<std::string, std::function<ModelConfig()>> p = {
      {"gpt2-124M", [] { return gpt2(12, 12, 768); }},
      {"gpt2-350M", [] { return gpt2(24, 16, 1024); }},
      {"gpt2-774M", [] { return gpt2(36, 20, 1280); }},
      {"gpt2-1558M", [] { return gpt2(48, 25, 1600); }},
      {"gpt2-tiny", [] { return gpt2(2, 4, 64, 256, 128); }},
      {"gpt2-mini", [] { return gpt2(4, 4, 128, 2048, 256); }},
      {"llama3.2-1B", [] { return llama("llama", 16, 32, 8, 2048, 8192, 128256, 500000.0, true, 131072); }},
      {"llama2-7B", [] { return llama("llama", 32, 32, 32, 4096, 11008, 32000, 10000.0, false, 4096); }},
      {"qwen2-0.5B", [] { return llama("qwen2", 24, 14, 2, 896, 4864, 151936, 1000000.0, true, 32768); }},
      {"mistral-7B", [] { return llama("mistral", 32, 32, 8, 4096, 14336, 32000, 1000000.0, false, 32768); }},
      {"llama-mini", [] { return llama("llama", 4, 4, 4, 128, 352, 2048, 10000.0, true, 256); }},
      {"llama-tiny", [] { return llama("llama", 2, 4, 2, 64, 160, 256, 10000.0, false, 128); }},
      {"llama-124M", [] { return llama("llama", 12, 12, 4, 768, 2048, 32000, 10000.0, false, 1024); }},  // benchmarks
      {"qwen2-tiny", [] { return llama("qwen2", 2, 4, 2, 64, 160, 256, 1000000.0, true, 128); }},
      {"qwen3-0.6B", [] { return llama("qwen3", 28, 16, 8, 1024, 3072, 151936, 1000000.0, true, 40960, 128); }},
      {"qwen3-tiny", [] { return llama("qwen3", 2, 4, 2, 64, 160, 256, 1000000.0, true, 128, 32); }},  // head_dim 32 != C/H
  };
  return p;
}

}  // namespace

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const auto& [name, fn] : presets()) names.push_back(name);
  return names;
}

ModelConfig preset(const std::string& name) {
  auto it = presets().find(name);
  LOOM_CHECK(it != presets().end(), "model.preset: unknown preset '{}' (known: {})", name, fmt::join(preset_names(), ", "));
  return it->second();
}

void ModelConfig::validate() const {
  LOOM_CHECK(vocab_size > 0 && padded_vocab >= vocab_size, "model: padded_vocab {} must be >= vocab_size {} > 0", padded_vocab, vocab_size);
  LOOM_CHECK(n_layer > 0 && n_embd > 0 && n_head > 0, "model: n_layer {}, n_embd {}, n_head {} must be positive", n_layer, n_embd, n_head);
  LOOM_CHECK(n_kv_head > 0 && n_head % n_kv_head == 0, "model: n_head {} is not a multiple of n_kv_head {}", n_head, n_kv_head);
  LOOM_CHECK(head_dim > 0 && (!rope || head_dim % 2 == 0), "model: head_dim {} must be positive (and even with rope)", head_dim);
  LOOM_CHECK(!qk_norm || rms_norm, "model: qk_norm needs rms_norm (the q/k norms are RMSNorms, as Qwen3's)");
  LOOM_CHECK(intermediate > 0 && max_seq_len > 0, "model: intermediate {} and max_seq_len {} must be positive", intermediate, max_seq_len);
  LOOM_CHECK(family == "gpt2" || family == "llama" || family == "qwen2" || family == "qwen3" || family == "mistral",
             "model: unknown family '{}' (gpt2, llama, qwen2, qwen3, mistral)", family);
}

}  // namespace loom::models
