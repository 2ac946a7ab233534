// Loom models and LoRA adapters as llama.cpp's converters write them. The model's tensors are
// taken in their Hugging Face form (models::to_hf_tensors), then renamed and re-laid out as
// convert_hf_to_gguf.py does with the same Hugging Face tensors.
#include "loom/io/gguf_model.h"

#include <algorithm>
#include <charconv>
#include <optional>
#include <set>

#include "loom/autograd/function.h"
#include "loom/core/error.h"
#include "loom/models/hf_names.h"
#include "loom/ops/shape.h"

namespace loom::io {

namespace {

struct NameMap {
  const char* hf;
  const char* gguf;
};
// gguf-py's tensor_mapping.py for the modules of each family: outside the blocks, then inside
// block i (GPT-2 "h.i.", the LLaMA family "model.layers.i.").
constexpr NameMap kGpt2Top[] = {{"wte", "token_embd"}, {"wpe", "position_embd"}, {"ln_f", "output_norm"}, {"lm_head", "output"}};
constexpr NameMap kGpt2Block[] = {{"ln_1", "attn_norm"},         {"attn.c_attn", "attn_qkv"}, {"attn.c_proj", "attn_output"},
                                  {"ln_2", "ffn_norm"},          {"mlp.c_fc", "ffn_up"},      {"mlp.c_proj", "ffn_down"}};
constexpr NameMap kLlamaTop[] = {{"model.embed_tokens", "token_embd"}, {"model.norm", "output_norm"}, {"lm_head", "output"}};
constexpr NameMap kLlamaBlock[] = {{"input_layernorm", "attn_norm"},
                                   {"self_attn.q_proj", "attn_q"},
                                   {"self_attn.k_proj", "attn_k"},
                                   {"self_attn.v_proj", "attn_v"},
                                   {"self_attn.o_proj", "attn_output"},
                                   {"self_attn.q_norm", "attn_q_norm"},
                                   {"self_attn.k_norm", "attn_k_norm"},
                                   {"post_attention_layernorm", "ffn_norm"},
                                   {"mlp.gate_proj", "ffn_gate"},
                                   {"mlp.up_proj", "ffn_up"},
                                   {"mlp.down_proj", "ffn_down"}};

template <size_t N> const char* lookup(const NameMap (&table)[N], std::string_view hf) {
  for (const NameMap& e : table)
    if (hf == e.hf) return e.gguf;
  return nullptr;
}

// LLaMA's q/k rows from the Hugging Face rotate-half order to llama.cpp's adjacent pairs (each
// head's rows (2, D/2) become (D/2, 2), as convert_hf_to_gguf.py's LlamaModel.permute does), or
// back (to_gguf false).
Tensor rope_rows(const Tensor& w, int64_t heads, bool to_gguf) {
  const Shape shape = w.shape();
  const int64_t rows = shape.at(0), rest = w.numel() / rows;
  LOOM_CHECK(rows % (2 * heads) == 0, "gguf: {} rows are not {} heads of an even size", rows, heads);
  autograd::NoGradGuard no_grad;
  const Tensor t = to_gguf ? ops::reshape(ops::contiguous(w), {heads, 2, rows / heads / 2, rest})
                           : ops::reshape(ops::contiguous(w), {heads, rows / heads / 2, 2, rest});
  return ops::reshape(ops::contiguous(ops::transpose(t, 1, 2)), shape);
}

// LLaMA (and Mistral, which converts as LLaMA) is the one family whose q/k rows llama.cpp wants
// in adjacent-pair RoPE order; Qwen2/3 run llama.cpp's NeoX RoPE on the Hugging Face layout.
// t: a weight of GGUF name g, or the B of a LoRA pair on it (B's rows are W's rows).
Tensor gguf_layout(const models::ModelConfig& c, const std::string& g, const Tensor& t, bool to_gguf) {
  if (c.family != "llama" && c.family != "mistral") return t;
  if (g.ends_with(".attn_q.weight")) return rope_rows(t, c.n_head, to_gguf);
  if (g.ends_with(".attn_k.weight")) return rope_rows(t, c.n_kv_head, to_gguf);
  return t;
}

// convert_hf_to_gguf.py's choice of type per tensor (prepare_tensors): 1-D tensors, norms,
// position embeddings and anything but a weight or LoRA matrix stay f32; a quantised type whose
// block does not divide a row falls back to f16 (gguf-py's QuantError).
gguf::TensorType tensor_type(const std::string& g, const Shape& shape, gguf::TensorType want) {
  const bool matrix = g.ends_with(".weight") || g.ends_with(".lora_a") || g.ends_with(".lora_b");
  if (shape.size() <= 1 || g.ends_with("_norm.weight") || g == "position_embd.weight" || !matrix) return gguf::TensorType::f32;
  if (shape.back() % gguf::block_size(want) != 0) return gguf::TensorType::f16;
  return want;
}

// general.file_type: llama.cpp's LLAMA_FTYPE of the bulk of the tensors.
uint32_t file_type(gguf::TensorType t) {
  switch (t) {
    case gguf::TensorType::f32: return 0;
    case gguf::TensorType::f16: return 1;
    case gguf::TensorType::q8_0: return 7;
    case gguf::TensorType::bf16: return 32;
  }
  return 0;
}

constexpr uint32_t kQuantizationVersion = 2;  // GGML_QNT_VERSION

// An f32 key's value as the decimal it was written from, its shortest representation as a float:
// 1e-06 rather than 9.99999997e-07.
double shortest_decimal(float v) {
  char buf[32];
  const char* end = std::to_chars(buf, buf + sizeof buf, v).ptr;
  double out = 0;
  std::from_chars(buf, end, out);
  return out;
}

void add_tensor(GgufContent& out, const std::string& name, const Tensor& t, gguf::TensorType type) {
  out.tensors.push_back({name, tensor_type(name, t.shape(), type), t.shape(), [t] { return t; }});
}

}  // namespace

std::string gguf_architecture(const models::ModelConfig& c) {
  if (c.family == "mistral") return "llama";  // MistralForCausalLM converts as LlamaModel
  LOOM_CHECK(c.family == "gpt2" || c.family == "llama" || c.family == "qwen2" || c.family == "qwen3",
             "gguf: family '{}' has no llama.cpp architecture (gpt2, llama, mistral, qwen2, qwen3)", c.family);
  return c.family;
}

std::string gguf_tensor_name(const models::ModelConfig& c, const std::string& hf_name) {
  const bool gpt2 = c.family == "gpt2";
  std::string_view name = hf_name;
  if (gpt2 && name.starts_with("transformer.")) name.remove_prefix(std::string_view("transformer.").size());
  const size_t dot = name.rfind('.');
  const std::string_view suffix = dot == std::string_view::npos ? "" : name.substr(dot);
  LOOM_CHECK(suffix == ".weight" || suffix == ".bias", "gguf: {} is not a weight or bias", hf_name);
  std::string_view module = name.substr(0, dot);
  const std::string_view block = gpt2 ? "h." : "model.layers.";
  if (module.starts_with(block)) {
    module.remove_prefix(block.size());
    const size_t end = module.find('.');
    const std::string_view index = module.substr(0, end);
    const char* g = end == std::string_view::npos ? nullptr : gpt2 ? lookup(kGpt2Block, module.substr(end + 1))
                                                                   : lookup(kLlamaBlock, module.substr(end + 1));
    const bool digits = !index.empty() && index.find_first_not_of("0123456789") == std::string_view::npos;
    LOOM_CHECK(g && digits, "gguf: {} has no llama.cpp tensor name", hf_name);
    return fmt::format("blk.{}.{}{}", index, g, suffix);
  }
  const char* g = gpt2 ? lookup(kGpt2Top, module) : lookup(kLlamaTop, module);
  LOOM_CHECK(g, "gguf: {} has no llama.cpp tensor name", hf_name);
  return fmt::format("{}{}", g, suffix);
}

GgufContent gguf_model(const models::ModelConfig& c, const std::map<std::string, Tensor>& state, gguf::TensorType type,
                       const std::string& name) {
  const std::string arch = gguf_architecture(c), a = arch + ".";
  GgufContent out;
  gguf::Metadata& m = out.metadata;
  m = {{"general.architecture", gguf::str(arch)},
       {"general.type", gguf::str("model")},
       {"general.name", gguf::str(name)},
       {a + "block_count", gguf::u32(uint32_t(c.n_layer))},
       {a + "context_length", gguf::u32(uint32_t(c.max_seq_len))},
       {a + "embedding_length", gguf::u32(uint32_t(c.n_embd))},
       {a + "feed_forward_length", gguf::u32(uint32_t(c.intermediate))},
       {a + "attention.head_count", gguf::u32(uint32_t(c.n_head))}};
  if (c.family == "gpt2") {
    m.emplace_back(a + "attention.layer_norm_epsilon", gguf::f32(c.norm_eps));
  } else {
    m.emplace_back(a + "attention.head_count_kv", gguf::u32(uint32_t(c.n_kv_head)));
    m.emplace_back(a + "rope.freq_base", gguf::f32(c.rope_theta));
    m.emplace_back(a + "attention.layer_norm_rms_epsilon", gguf::f32(c.norm_eps));
    // Loom's config.json always gives head_dim, which the converter writes as these two.
    m.emplace_back(a + "attention.key_length", gguf::u32(uint32_t(c.head_dim)));
    m.emplace_back(a + "attention.value_length", gguf::u32(uint32_t(c.head_dim)));
    if (arch == "llama") {
      m.emplace_back(a + "vocab_size", gguf::u32(uint32_t(c.vocab_size)));
      m.emplace_back(a + "rope.dimension_count", gguf::u32(uint32_t(c.head_dim)));
    }
  }
  m.emplace_back("general.file_type", gguf::u32(file_type(type)));
  m.emplace_back("general.quantization_version", gguf::u32(kQuantizationVersion));

  autograd::NoGradGuard no_grad;
  const std::map<std::string, Tensor> hf = models::to_hf_tensors(c, state);
  for (const models::HfTensor& e : models::hf_tensor_map(c)) {
    const std::string g = gguf_tensor_name(c, e.hf_name);
    // GPT2Model.modify_tensors turns Conv1D's [in, out] back into [out, in].
    const Tensor t = e.conv1d ? ops::transpose(hf.at(e.hf_name), 0, 1) : hf.at(e.hf_name);
    add_tensor(out, g, gguf_layout(c, g, t, true), type);
  }
  return out;
}

GgufContent gguf_lora(const models::ModelConfig& c, const nn::TransformerLM& adapted, const nn::LoraConfig& cfg, gguf::TensorType type,
                      const std::string& name) {
  GgufContent out;
  out.metadata = {{"general.architecture", gguf::str(gguf_architecture(c))},
                  {"general.type", gguf::str("adapter")},
                  {"general.name", gguf::str(name)},
                  {"adapter.type", gguf::str("lora")},
                  {"adapter.lora.alpha", gguf::f32(cfg.scale() * double(cfg.r))},
                  {"general.quantization_version", gguf::u32(kQuantizationVersion)}};
  const std::map<std::string, std::string> hf = nn::hf_module_paths(c);
  autograd::NoGradGuard no_grad;
  for (const auto& [path, module] : adapted.named_modules()) {
    auto lora = std::dynamic_pointer_cast<nn::LoraLinear>(module);
    if (!lora) continue;
    const std::string g = gguf_tensor_name(c, hf.at(path) + ".weight");
    add_tensor(out, g + ".lora_a", lora->lora_A->weight.detach(), type);
    add_tensor(out, g + ".lora_b", gguf_layout(c, g, lora->lora_B->weight.detach(), true), type);
  }
  LOOM_CHECK(!out.tensors.empty(), "gguf: the adapter has no LoRA modules");
  return out;
}

ModelWeights read_gguf_model(const std::filesystem::path& file) {
  const gguf::File f(file);
  const std::string where = "gguf: " + file.string();
  const gguf::Metadata& m = f.metadata();
  const gguf::Value* arch_value = gguf::find(m, "general.architecture");
  LOOM_CHECK(arch_value && arch_value->as_string(), "{}: general.architecture is missing or not a string", where);
  const std::string arch = *arch_value->as_string();
  LOOM_CHECK(arch == "gpt2" || arch == "llama" || arch == "qwen2" || arch == "qwen3",
             "{}: architecture '{}' is not one Loom runs (gpt2, llama, qwen2, qwen3)", where, arch);
  const gguf::Value* type = gguf::find(m, "general.type");
  LOOM_CHECK(!type || (type->as_string() && *type->as_string() == "model"), "{}: general.type is not \"model\" (an adapter?)", where);
  auto count = [&](const std::string& key, std::optional<int64_t> fallback) {
    const gguf::Value* v = gguf::find(m, arch + "." + key);
    const std::optional<int64_t> n = v ? v->as_integer() : fallback;
    LOOM_CHECK(n && *n > 0 && *n <= (int64_t(1) << 40), "{}: {}.{} is missing or not a positive integer", where, arch, key);
    return *n;
  };
  auto number = [&](const std::string& key, double fallback) {
    const gguf::Value* v = gguf::find(m, arch + "." + key);
    LOOM_CHECK(!v || v->as_number(), "{}: {}.{} is not a float", where, arch, key);
    return !v ? fallback : v->type == gguf::ValueType::f32 ? shortest_decimal(float(*v->as_number())) : *v->as_number();
  };
  const gguf::TensorInfo& embedding = f.tensor("token_embd.weight");
  LOOM_CHECK(embedding.shape.size() == 2, "{}: token_embd.weight has shape {}, not (vocabulary, embedding)", where, embedding.shape);
  models::ModelConfig c;  // GPT-2's defaults
  c.family = arch;
  c.vocab_size = embedding.shape[0];
  c.n_layer = count("block_count", std::nullopt);
  c.max_seq_len = count("context_length", std::nullopt);
  c.n_embd = count("embedding_length", std::nullopt);
  c.intermediate = count("feed_forward_length", std::nullopt);
  c.n_head = count("attention.head_count", std::nullopt);
  c.tied_head = std::none_of(f.tensors().begin(), f.tensors().end(), [](const gguf::TensorInfo& t) { return t.name == "output.weight"; });
  if (arch == "gpt2") {
    c.padded_vocab = models::pad_vocab(c.vocab_size);
    c.n_kv_head = c.n_head;
    c.head_dim = c.n_embd / c.n_head;
    c.norm_eps = number("attention.layer_norm_epsilon", c.norm_eps);
  } else {
    c.padded_vocab = c.vocab_size;
    c.n_kv_head = count("attention.head_count_kv", c.n_head);
    c.head_dim = count("attention.key_length", c.n_embd / c.n_head);
    LOOM_CHECK(count("attention.value_length", c.head_dim) == c.head_dim && count("rope.dimension_count", c.head_dim) == c.head_dim,
               "{}: value_length or rope.dimension_count differ from the head size {} (Loom rotates whole heads)", where, c.head_dim);
    c.norm_eps = number("attention.layer_norm_rms_epsilon", 1e-6);
    c.rope_theta = number("rope.freq_base", 10000.0);
    c.rms_norm = c.rope = c.swiglu = true;
    c.linear_bias = false;
    c.qkv_bias = arch == "qwen2";
    c.qk_norm = arch == "qwen3";
  }
  std::set<std::string> unused;
  for (const gguf::TensorInfo& t : f.tensors()) unused.insert(t.name);
  std::map<std::string, Tensor> hf;
  autograd::NoGradGuard no_grad;
  for (const models::HfTensor& e : models::hf_tensor_map(c)) {
    const std::string g = gguf_tensor_name(c, e.hf_name);
    const gguf::TensorInfo& t = f.tensor(g);
    const Shape want = e.conv1d ? Shape{e.hf_shape[1], e.hf_shape[0]} : e.hf_shape;
    LOOM_CHECK(t.shape == want, "{}: tensor {} has shape {}, the {} config expects {}", where, g, t.shape, arch, want);
    const Tensor v = gguf_layout(c, g, f.values(t), false);
    hf.emplace(e.hf_name, e.conv1d ? ops::contiguous(ops::transpose(v, 0, 1)) : v);
    unused.erase(g);
  }
  LOOM_CHECK(unused.empty(), "{}: tensor {} is not part of a {}-block {} model Loom runs", where, *unused.begin(), c.n_layer, arch);
  return {c, models::from_hf_tensors(c, hf)};
}

}  // namespace loom::io
