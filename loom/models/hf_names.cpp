// Hugging Face name maps and config.json conversion for GPT-2 and the LLaMA family (LLaMA,
// Qwen2, Qwen3, Mistral).
// The map is one table per config; to_hf_tensors and from_hf_tensors both walk it, so the
// two directions cannot disagree.
#include "loom/models/hf_names.h"

#include <algorithm>
#include <optional>
#include <set>

#include "loom/autograd/function.h"
#include "loom/core/error.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/shape.h"

namespace loom::models {

using json = nlohmann::json;

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// HF tensors that are not parameters: GPT-2's causal-mask buffers, old LLaMA rotary caches,
// and a head tied to the embedding.
bool ignored_hf_tensor(const ModelConfig& c, const std::string& name) {
  return ends_with(name, ".attn.bias") || ends_with(name, ".attn.masked_bias") || ends_with(name, ".rotary_emb.inv_freq") ||
         (c.tied_head && name == "lm_head.weight");
}

// config.json field readers; a missing field takes `fallback` when one is given.
const json* find(const json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}
int64_t int_field(const json& j, const char* key, std::optional<int64_t> fallback = std::nullopt) {
  const json* v = find(j, key);
  LOOM_CHECK(v || fallback, "hf config: field '{}' is missing", key);
  if (!v) return *fallback;
  LOOM_CHECK(v->is_number_integer() && v->get<int64_t>() > 0 && v->get<int64_t>() <= (int64_t(1) << 40),
             "hf config: field '{}' is {}, not a positive integer", key, v->dump());
  return v->get<int64_t>();
}
double float_field(const json& j, const char* key, double fallback) {
  const json* v = find(j, key);
  LOOM_CHECK(!v || v->is_number(), "hf config: field '{}' is {}, not a number", key, v ? v->dump() : "");
  return v ? v->get<double>() : fallback;
}
bool bool_field(const json& j, const char* key, bool fallback) {
  const json* v = find(j, key);
  LOOM_CHECK(!v || v->is_boolean(), "hf config: field '{}' is {}, not true/false", key, v ? v->dump() : "");
  return v ? v->get<bool>() : fallback;
}
std::string string_field(const json& j, const char* key, const std::string& fallback) {
  const json* v = find(j, key);
  LOOM_CHECK(!v || v->is_string(), "hf config: field '{}' is {}, not a string", key, v ? v->dump() : "");
  return v ? v->get<std::string>() : fallback;
}
int64_t head_dim_of(int64_t C, int64_t H) {
  LOOM_CHECK(C % H == 0, "hf config: hidden size {} is not a multiple of the {} heads", C, H);
  return C / H;
}

// RoPE's base: transformers >= 5 writes it inside "rope_parameters" ({"rope_type": "default",
// "rope_theta": ...}), older versions as "rope_theta". Anything else there (another rope_type,
// a partial rotary factor, per-layer-type settings) is refused, never read as the default base.
double rope_theta_of(const json& j) {
  const json* p = find(j, "rope_parameters");
  if (!p) return float_field(j, "rope_theta", 10000.0);
  LOOM_CHECK(p->is_object() && find(*p, "rope_theta"), "hf config: rope_parameters {} have no rope_theta", p->dump().substr(0, 200));
  for (const auto& [key, value] : p->items())
    LOOM_CHECK(key == "rope_theta" || (key == "rope_type" && value == "default") || (key == "partial_rotary_factor" && value == 1),
               "hf config: rope_parameters entry \"{}\": {} is not supported (only rope_type \"default\" over the whole head)", key,
               value.dump());
  const double theta = float_field(*p, "rope_theta", 0.0);
  LOOM_CHECK(!find(j, "rope_theta") || float_field(j, "rope_theta", theta) == theta,
             "hf config: rope_theta {} differs from rope_parameters' {}", j.at("rope_theta").dump(), theta);
  return theta;
}

ModelConfig gpt2_config(const json& j) {
  ModelConfig c;  // the defaults are GPT-2's
  c.vocab_size = int_field(j, "vocab_size");
  c.padded_vocab = pad_vocab(c.vocab_size);
  c.n_embd = int_field(j, "n_embd");
  c.n_layer = int_field(j, "n_layer");
  c.n_head = c.n_kv_head = int_field(j, "n_head");
  c.head_dim = head_dim_of(c.n_embd, c.n_head);
  c.intermediate = int_field(j, "n_inner", 4 * c.n_embd);
  c.max_seq_len = int_field(j, "n_positions");
  c.norm_eps = float_field(j, "layer_norm_epsilon", 1e-5);
  c.init_std = float_field(j, "initializer_range", 0.02);
  c.tied_head = bool_field(j, "tie_word_embeddings", true);
  const std::string act = string_field(j, "activation_function", "gelu_new");
  LOOM_CHECK(act == "gelu_new" || act == "gelu_pytorch_tanh",
             "hf config: activation_function '{}' is not supported (Loom runs tanh GELU: gelu_new)", act);
  LOOM_CHECK(bool_field(j, "scale_attn_weights", true) && !bool_field(j, "scale_attn_by_inverse_layer_idx", false),
             "hf config: GPT-2 attention scaled other than by 1/sqrt(head_dim) is not supported");
  return c;
}

ModelConfig llama_config(const json& j, const std::string& family) {
  ModelConfig c;
  c.family = family;
  c.vocab_size = c.padded_vocab = int_field(j, "vocab_size");
  c.n_embd = int_field(j, "hidden_size");
  c.intermediate = int_field(j, "intermediate_size");
  c.n_layer = int_field(j, "num_hidden_layers");
  c.n_head = int_field(j, "num_attention_heads");
  c.n_kv_head = int_field(j, "num_key_value_heads", c.n_head);
  c.head_dim = find(j, "head_dim") ? int_field(j, "head_dim") : head_dim_of(c.n_embd, c.n_head);
  c.max_seq_len = int_field(j, "max_position_embeddings");
  c.norm_eps = float_field(j, "rms_norm_eps", 1e-6);
  c.rope_theta = rope_theta_of(j);
  c.init_std = float_field(j, "initializer_range", 0.02);
  c.tied_head = bool_field(j, "tie_word_embeddings", false);
  c.rms_norm = c.rope = c.swiglu = true;
  c.linear_bias = false;
  c.qkv_bias = family == "qwen2";
  c.qk_norm = family == "qwen3";
  const std::string act = string_field(j, "hidden_act", "silu");
  LOOM_CHECK(act == "silu", "hf config: hidden_act '{}' is not supported (Loom's SwiGLU uses silu)", act);
  LOOM_CHECK(!find(j, "rope_scaling"), "hf config: rope_scaling {} is not supported", j.at("rope_scaling").dump());
  LOOM_CHECK(!bool_field(j, "attention_bias", false) && !bool_field(j, "mlp_bias", false),
             "hf config: attention_bias / mlp_bias are not supported for {}", family);
  // Within the window, sliding-window attention is full causal attention: cap the length there.
  if (family == "mistral" || bool_field(j, "use_sliding_window", false))
    c.max_seq_len = std::min(c.max_seq_len, int_field(j, "sliding_window", c.max_seq_len));
  return c;
}

}  // namespace

void check_hf_compatible(const ModelConfig& c) {
  c.validate();
  auto need = [&](const char* field, auto have, auto want) {
    LOOM_CHECK(have == want, "hf: a {} model needs {} = {} (the config has {})", c.family, field, want, have);
  };
  const bool gpt2 = c.family == "gpt2";
  need("rms_norm", c.rms_norm, !gpt2);
  need("rope", c.rope, !gpt2);
  need("swiglu", c.swiglu, !gpt2);
  need("linear_bias", c.linear_bias, gpt2);
  need("qkv_bias", c.qkv_bias, c.family == "qwen2");
  need("qk_norm", c.qk_norm, c.family == "qwen3");
  if (gpt2) {
    need("n_kv_head", c.n_kv_head, c.n_head);
    need("head_dim", c.head_dim, c.n_embd / c.n_head);
    need("n_embd % n_head", c.n_embd % c.n_head, int64_t(0));
  }
}

std::vector<HfTensor> hf_tensor_map(const ModelConfig& c) {
  check_hf_compatible(c);
  const bool gpt2 = c.family == "gpt2";
  const int64_t C = c.n_embd, I = c.intermediate, Dq = c.n_head * c.head_dim, Dkv = c.n_kv_head * c.head_dim;
  std::vector<HfTensor> map;
  auto add = [&](const std::string& hf, std::vector<std::pair<std::string, Shape>> parts, bool conv1d, bool vocab_padded) {
    Shape shape = parts[0].second;
    shape[0] = 0;
    for (const auto& part : parts) shape[0] += part.second[0];
    if (vocab_padded) shape[0] = c.vocab_size;
    if (conv1d) std::swap(shape[0], shape[1]);
    map.push_back(HfTensor{hf, std::move(parts), vocab_padded, conv1d, std::move(shape)});
  };
  // Linear layers named `outs` (Loom prefix, out size), all reading `in` features, in one HF
  // tensor: a Conv1D for GPT-2.
  auto linear = [&](const std::string& hf, const std::vector<std::pair<std::string, int64_t>>& outs, int64_t in, bool bias) {
    std::vector<std::pair<std::string, Shape>> weights, biases;
    for (const auto& [loom, out] : outs) {
      weights.emplace_back(loom + ".weight", Shape{out, in});
      biases.emplace_back(loom + ".bias", Shape{out});
    }
    add(hf + ".weight", std::move(weights), gpt2, false);
    if (bias) add(hf + ".bias", std::move(biases), false, false);
  };
  auto norm = [&](const std::string& hf, const std::string& loom, int64_t dim) {
    add(hf + ".weight", {{loom + ".weight", {dim}}}, false, false);
    if (!c.rms_norm) add(hf + ".bias", {{loom + ".bias", {dim}}}, false, false);
  };
  const bool qkv_bias = c.linear_bias || c.qkv_bias, bias = c.linear_bias;

  add(gpt2 ? "wte.weight" : "model.embed_tokens.weight", {{"tok_emb.weight", {c.padded_vocab, C}}}, false, true);
  if (!c.rope) add("wpe.weight", {{"pos_emb.weight", {c.max_seq_len, C}}}, false, false);
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const std::string l = fmt::format("layers.{}.", i);
    if (gpt2) {
      const std::string h = fmt::format("h.{}.", i);
      norm(h + "ln_1", l + "attn_norm", C);
      linear(h + "attn.c_attn", {{l + "attn.wq", Dq}, {l + "attn.wk", Dkv}, {l + "attn.wv", Dkv}}, C, qkv_bias);
      linear(h + "attn.c_proj", {{l + "attn.wo", C}}, Dq, bias);
      norm(h + "ln_2", l + "mlp_norm", C);
      linear(h + "mlp.c_fc", {{l + "mlp.fc", I}}, C, bias);
      linear(h + "mlp.c_proj", {{l + "mlp.proj", C}}, I, bias);
    } else {
      const std::string h = fmt::format("model.layers.{}.", i);
      norm(h + "input_layernorm", l + "attn_norm", C);
      linear(h + "self_attn.q_proj", {{l + "attn.wq", Dq}}, C, qkv_bias);
      linear(h + "self_attn.k_proj", {{l + "attn.wk", Dkv}}, C, qkv_bias);
      linear(h + "self_attn.v_proj", {{l + "attn.wv", Dkv}}, C, qkv_bias);
      linear(h + "self_attn.o_proj", {{l + "attn.wo", C}}, Dq, bias);
      if (c.qk_norm) {
        norm(h + "self_attn.q_norm", l + "attn.q_norm", c.head_dim);
        norm(h + "self_attn.k_norm", l + "attn.k_norm", c.head_dim);
      }
      norm(h + "post_attention_layernorm", l + "mlp_norm", C);
      linear(h + "mlp.gate_proj", {{l + "mlp.gate", I}}, C, bias);
      linear(h + "mlp.up_proj", {{l + "mlp.up", I}}, C, bias);
      linear(h + "mlp.down_proj", {{l + "mlp.down", C}}, I, bias);
    }
  }
  norm(gpt2 ? "ln_f" : "model.norm", "norm", C);
  if (!c.tied_head) add("lm_head.weight", {{"lm_head.weight", {c.padded_vocab, C}}}, false, true);
  return map;
}

std::map<std::string, Shape> loom_parameter_shapes(const ModelConfig& c) {
  std::map<std::string, Shape> shapes;
  for (const HfTensor& e : hf_tensor_map(c))
    for (const auto& [name, shape] : e.parts) shapes.emplace(name, shape);
  return shapes;
}

std::map<std::string, Tensor> to_hf_tensors(const ModelConfig& c, const std::map<std::string, Tensor>& state) {
  const std::vector<HfTensor> map = hf_tensor_map(c);
  std::set<std::string> unused;
  for (const auto& [name, t] : state) unused.insert(name);
  autograd::NoGradGuard no_grad;
  std::map<std::string, Tensor> out;
  for (const HfTensor& e : map) {
    std::vector<Tensor> parts;
    for (const auto& [name, shape] : e.parts) {
      auto it = state.find(name);
      LOOM_CHECK(it != state.end(), "hf: missing Loom tensor {}", name);
      LOOM_CHECK(it->second.shape() == shape, "hf: Loom tensor {} has shape {}, the {} config expects {}", name, it->second.shape(),
                 c.family, shape);
      parts.push_back(it->second.detach());
      unused.erase(name);
    }
    Tensor t = parts.size() == 1 ? parts[0] : ops::cat(parts, 0);
    if (e.vocab_padded) t = ops::narrow(t, 0, 0, c.vocab_size);
    if (e.conv1d) t = ops::transpose(t, 0, 1);
    out.emplace(e.hf_name, ops::contiguous(t));
  }
  LOOM_CHECK(unused.empty(), "hf: unexpected Loom tensor {} (not a parameter of this {} config)", *unused.begin(), c.family);
  return out;
}

std::map<std::string, Tensor> hf_views(const ModelConfig& c, const std::map<std::string, Tensor>& hf) {
  const std::vector<HfTensor> map = hf_tensor_map(c);
  std::map<std::string, Tensor> pending;  // by canonical HF name
  for (const auto& [file_name, t] : hf) {
    std::string name = file_name;
    if (c.family == "gpt2" && name.starts_with("transformer.")) name.erase(0, std::string("transformer.").size());
    if (ignored_hf_tensor(c, name)) continue;
    LOOM_CHECK(pending.emplace(name, t).second, "hf: tensor {} appears both with and without the 'transformer.' prefix", name);
  }
  autograd::NoGradGuard no_grad;
  std::map<std::string, Tensor> out;
  for (const HfTensor& e : map) {
    auto it = pending.find(e.hf_name);
    LOOM_CHECK(it != pending.end(), "hf: missing tensor {}", e.hf_name);
    Tensor t = it->second.detach();
    pending.erase(it);
    LOOM_CHECK(t.shape() == e.hf_shape, "hf: tensor {} has shape {}, the {} config expects {}", e.hf_name, t.shape(), c.family, e.hf_shape);
    LOOM_CHECK(is_floating(t.dtype()), "hf: tensor {} has dtype {}, expected a floating type", e.hf_name, dtype_name(t.dtype()));
    if (e.conv1d) t = ops::transpose(t, 0, 1);
    int64_t row = 0;
    for (const auto& [name, shape] : e.parts) {
      const int64_t rows = std::min(shape[0], t.size(0) - row);  // a vocabulary-padded part stops at vocab_size
      out.emplace(name, ops::narrow(t, 0, row, rows));
      row += rows;
    }
  }
  LOOM_CHECK(pending.empty(), "hf: unexpected tensor {} (not part of a {}-layer {} model)", pending.begin()->first, c.n_layer, c.family);
  return out;
}

std::map<std::string, Tensor> from_hf_tensors(const ModelConfig& c, const std::map<std::string, Tensor>& hf) {
  const std::map<std::string, Shape> shapes = loom_parameter_shapes(c);
  std::map<std::string, Tensor> out;
  for (auto& [name, view] : hf_views(c, hf)) {
    Tensor t = Tensor::zeros(shapes.at(name));  // vocabulary padding rows stay zero
    Tensor rows = ops::narrow(t, 0, 0, view.size(0));
    ops::copy_(rows, view.dtype() == DType::f32 ? view : ops::cast(view, DType::f32));
    out.emplace(name, t);
  }
  return out;
}

ModelConfig config_from_hf_json(const json& j) {
  LOOM_CHECK(j.is_object(), "hf config: expected a JSON object, got {}", j.dump().substr(0, 80));
  const std::string type = string_field(j, "model_type", "");
  LOOM_CHECK(type == "gpt2" || type == "llama" || type == "qwen2" || type == "qwen3" || type == "mistral",
             "hf config: model_type '{}' is not supported (gpt2, llama, qwen2, qwen3, mistral)", type);
  ModelConfig c = type == "gpt2" ? gpt2_config(j) : llama_config(j, type);
  check_hf_compatible(c);
  return c;
}

json hf_config_json(const ModelConfig& c) {
  check_hf_compatible(c);
  if (c.family == "gpt2") {
    return {{"architectures", json::array({"GPT2LMHeadModel"})},
            {"model_type", "gpt2"},
            {"vocab_size", c.vocab_size},
            {"n_positions", c.max_seq_len},
            {"n_embd", c.n_embd},
            {"n_layer", c.n_layer},
            {"n_head", c.n_head},
            {"n_inner", c.intermediate == 4 * c.n_embd ? json(nullptr) : json(c.intermediate)},
            {"layer_norm_epsilon", c.norm_eps},
            {"activation_function", "gelu_new"},
            {"initializer_range", c.init_std},
            {"tie_word_embeddings", c.tied_head},
            {"torch_dtype", "float32"}};
  }
  const std::map<std::string, std::string> arch = {
      {"llama", "LlamaForCausalLM"}, {"qwen2", "Qwen2ForCausalLM"}, {"qwen3", "Qwen3ForCausalLM"}, {"mistral", "MistralForCausalLM"}};
  json j = {{"architectures", json::array({arch.at(c.family)})},
            {"model_type", c.family},
            {"vocab_size", c.vocab_size},
            {"hidden_size", c.n_embd},
            {"intermediate_size", c.intermediate},
            {"num_hidden_layers", c.n_layer},
            {"num_attention_heads", c.n_head},
            {"num_key_value_heads", c.n_kv_head},
            {"head_dim", c.head_dim},
            {"max_position_embeddings", c.max_seq_len},
            {"rms_norm_eps", c.norm_eps},
            {"rope_theta", c.rope_theta},
            {"rope_scaling", nullptr},
            {"hidden_act", "silu"},
            {"initializer_range", c.init_std},
            {"tie_word_embeddings", c.tied_head},
            {"torch_dtype", "float32"}};
  if (c.family == "llama" || c.family == "qwen3") {
    j["attention_bias"] = false;
    j["mlp_bias"] = false;
  }
  if (c.family == "mistral") j["sliding_window"] = nullptr;  // Loom attends over the whole context
  if (c.family == "qwen2" || c.family == "qwen3") j["use_sliding_window"] = false;
  return j;
}

}  // namespace loom::models
