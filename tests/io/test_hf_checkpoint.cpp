// Hugging Face checkpoints: name maps against the real model, save/load round trips for
// GPT-2, LLaMA, Qwen2 and Qwen3, GPT-2's Conv1D layout checked against hand-built tensors, sharded
// directories, config.json conversion, and every bad input rejected naming the tensor or field.
#include <gtest/gtest.h>

#include "io_testing.h"
#include "loom/io/hf_checkpoint.h"
#include "loom/io/safetensors.h"
#include "loom/models/hf_names.h"
#include "loom/nn/transformer.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/matmul.h"
#include "loom/ops/shape.h"

using namespace loom;
using namespace loom::io;
using namespace loom::io_testing;
using models::ModelConfig;
using nlohmann::json;

namespace {

void expect_same_config(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.family, b.family);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.padded_vocab, b.padded_vocab);
  EXPECT_EQ(a.n_layer, b.n_layer);
  EXPECT_EQ(a.n_head, b.n_head);
  EXPECT_EQ(a.n_kv_head, b.n_kv_head);
  EXPECT_EQ(a.n_embd, b.n_embd);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.intermediate, b.intermediate);
  EXPECT_EQ(a.max_seq_len, b.max_seq_len);
  EXPECT_EQ(a.rms_norm, b.rms_norm);
  EXPECT_EQ(a.norm_eps, b.norm_eps);
  EXPECT_EQ(a.rope, b.rope);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.swiglu, b.swiglu);
  EXPECT_EQ(a.linear_bias, b.linear_bias);
  EXPECT_EQ(a.qkv_bias, b.qkv_bias);
  EXPECT_EQ(a.qk_norm, b.qk_norm);
  EXPECT_EQ(a.tied_head, b.tied_head);
  EXPECT_EQ(a.init_std, b.init_std);
}

void expect_same_state(const std::map<std::string, Tensor>& a, const std::map<std::string, Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(b.count(name));
    EXPECT_EQ(b.at(name).shape(), t.shape());
    EXPECT_EQ(bytes_of(b.at(name)), bytes_of(t));
  }
}

// Tiny presets plus variants that exercise vocab padding, an untied GPT-2 head and a tied llama.
std::vector<ModelConfig> test_configs() {
  ModelConfig gpt2_padded = models::preset("gpt2-tiny");
  gpt2_padded.vocab_size = 200;  // padded_vocab stays 256
  gpt2_padded.tied_head = false;
  ModelConfig llama_tied = models::preset("llama-tiny");
  llama_tied.tied_head = true;
  llama_tied.family = "mistral";
  return {models::preset("gpt2-tiny"), models::preset("llama-tiny"), models::preset("qwen2-tiny"), models::preset("qwen3-tiny"), gpt2_padded,
          llama_tied};
}

}  // namespace

TEST(HfNames, MapCoversExactlyTheModelParameters) {
  for (const ModelConfig& c : test_configs()) {
    SCOPED_TRACE(c.family);
    nn::TransformerLM model(c);
    std::map<std::string, Shape> expected;
    for (const auto& [name, t] : model.state_dict()) expected[name] = t.shape();
    EXPECT_EQ(models::loom_parameter_shapes(c), expected);
  }
}

TEST(HfCheckpoint, SaveLoadRoundTripsEveryFamily) {
  for (const ModelConfig& c : test_configs()) {
    SCOPED_TRACE(c.family + (c.tied_head ? " tied" : " untied"));
    TempDir dir;
    nn::TransformerLM model(c);
    model.init(7);
    save_hf(dir / "m", c, model.state_dict());
    ModelWeights w = load_hf(dir / "m");
    expect_same_config(w.config, c);
    // Padding rows are not stored: they come back as zeros.
    std::map<std::string, Tensor> expected = model.state_dict();
    for (const char* name : {"tok_emb.weight", "lm_head.weight"}) {
      if (!expected.count(name) || c.padded_vocab == c.vocab_size) continue;
      Tensor padded = ops::clone(expected[name].detach());
      std::fill(padded.data<float>() + c.vocab_size * c.n_embd, padded.data<float>() + padded.numel(), 0.0f);
      expected[name] = padded;
    }
    expect_same_state(w.state, expected);

    // The loaded model computes the same logits over the real vocabulary.
    nn::TransformerLM loaded(w.config);
    loaded.load_state_dict(w.state);
    Tensor ids = Tensor::from_ints({1, 5, 9, 3}, {1, 4});
    auto logits = [&](const nn::TransformerLM& lm) { return bytes_of(ops::contiguous(ops::narrow(lm.forward(ids), 2, 0, c.vocab_size))); };
    EXPECT_EQ(logits(loaded), logits(model));
  }
}

TEST(HfCheckpoint, WritesHuggingFaceNamesAndLayouts) {
  TempDir dir;
  ModelConfig g = models::preset("gpt2-tiny");  // C 64, 4 heads, 2 layers, V 256, T 128
  nn::TransformerLM gm(g);
  gm.init(1);
  save_hf(dir / "g", g, gm.state_dict());
  Metadata meta;
  TensorMap f = read_safetensors(dir / "g" / "model.safetensors", &meta);
  EXPECT_EQ(meta.at("format"), "pt");
  EXPECT_EQ(f.at("wte.weight").shape(), (Shape{256, 64}));
  EXPECT_EQ(f.at("wpe.weight").shape(), (Shape{128, 64}));
  EXPECT_EQ(f.at("h.1.attn.c_attn.weight").shape(), (Shape{64, 192}));
  EXPECT_EQ(f.at("h.1.attn.c_attn.bias").shape(), (Shape{192}));
  EXPECT_EQ(f.at("h.0.mlp.c_fc.weight").shape(), (Shape{64, 256}));
  EXPECT_EQ(f.at("h.0.mlp.c_proj.weight").shape(), (Shape{256, 64}));
  EXPECT_EQ(f.count("lm_head.weight"), 0u);
  EXPECT_EQ(f.size(), 2u + 2 * 12 + 2);
  const json gj = json::parse(read_bytes(dir / "g" / "config.json"));
  EXPECT_EQ(gj.at("model_type"), "gpt2");
  EXPECT_EQ(gj.at("n_embd"), 64);
  EXPECT_EQ(gj.at("activation_function"), "gelu_new");

  ModelConfig q = models::preset("qwen2-tiny");  // 4 heads, 2 kv heads of 16, I 160, tied
  nn::TransformerLM qm(q);
  qm.init(2);
  save_hf(dir / "q", q, qm.state_dict());
  f = read_safetensors(dir / "q" / "model.safetensors");
  EXPECT_EQ(f.at("model.layers.1.self_attn.k_proj.weight").shape(), (Shape{32, 64}));
  EXPECT_EQ(f.at("model.layers.1.self_attn.v_proj.bias").shape(), (Shape{32}));
  EXPECT_EQ(f.at("model.layers.0.mlp.down_proj.weight").shape(), (Shape{64, 160}));
  EXPECT_EQ(f.count("model.layers.0.self_attn.o_proj.bias"), 0u);
  EXPECT_EQ(f.count("lm_head.weight"), 0u);
  // LLaMA-family projections are nn.Linear [out, in], exactly Loom's layout.
  const auto qs = qm.state_dict();
  EXPECT_EQ(bytes_of(f.at("model.layers.0.self_attn.q_proj.weight")), bytes_of(qs.at("layers.0.attn.wq.weight")));
  EXPECT_EQ(bytes_of(f.at("model.layers.1.mlp.gate_proj.weight")), bytes_of(qs.at("layers.1.mlp.gate.weight")));
  const json qj = json::parse(read_bytes(dir / "q" / "config.json"));
  EXPECT_EQ(qj.at("num_key_value_heads"), 2);
  EXPECT_EQ(qj.at("tie_word_embeddings"), true);

  ModelConfig l = models::preset("llama-tiny");
  nn::TransformerLM lm(l);
  save_hf(dir / "l", l, lm.state_dict());
  EXPECT_EQ(read_safetensors(dir / "l" / "model.safetensors").at("lm_head.weight").shape(), (Shape{256, 64}));
}

// Qwen3: per-head q/k norms of D = 32 (not C/H = 16) under their HF names, q/o projections
// H·D = 128 wide, and the config.json fields transformers' Qwen3Config reads.
TEST(HfCheckpoint, WritesQwen3NamesAndConfig) {
  TempDir dir;
  ModelConfig c = models::preset("qwen3-tiny");  // C 64, 4 heads and 2 kv heads of 32, I 160, tied
  nn::TransformerLM m(c);
  m.init(4);
  save_hf(dir / "q3", c, m.state_dict());
  TensorMap f = read_safetensors(dir / "q3" / "model.safetensors");
  EXPECT_EQ(f.at("model.layers.1.self_attn.q_norm.weight").shape(), (Shape{32}));
  EXPECT_EQ(f.at("model.layers.1.self_attn.k_norm.weight").shape(), (Shape{32}));
  EXPECT_EQ(f.at("model.layers.0.self_attn.q_proj.weight").shape(), (Shape{128, 64}));
  EXPECT_EQ(f.at("model.layers.0.self_attn.k_proj.weight").shape(), (Shape{64, 64}));
  EXPECT_EQ(f.at("model.layers.0.self_attn.o_proj.weight").shape(), (Shape{64, 128}));
  for (const char* absent : {"model.layers.0.self_attn.q_proj.bias", "model.layers.0.self_attn.q_norm.bias", "lm_head.weight"})
    EXPECT_EQ(f.count(absent), 0u) << absent;
  EXPECT_EQ(f.size(), 1u + 2 * 11 + 1);  // embedding, 11 tensors per layer, final norm
  const auto s = m.state_dict();
  EXPECT_EQ(bytes_of(f.at("model.layers.1.self_attn.k_norm.weight")), bytes_of(s.at("layers.1.attn.k_norm.weight")));
  const json j = json::parse(read_bytes(dir / "q3" / "config.json"));
  EXPECT_EQ(j.at("architectures")[0], "Qwen3ForCausalLM");
  EXPECT_EQ(j.at("model_type"), "qwen3");
  EXPECT_EQ(j.at("head_dim"), 32);
  EXPECT_EQ(j.at("hidden_size"), 64);
  EXPECT_EQ(j.at("num_attention_heads"), 4);
  EXPECT_EQ(j.at("num_key_value_heads"), 2);
  EXPECT_EQ(j.at("tie_word_embeddings"), true);
  EXPECT_EQ(j.at("rope_theta"), 1000000.0);
  EXPECT_EQ(j.at("rms_norm_eps"), 1e-6);
  EXPECT_EQ(j.at("attention_bias"), false);
  EXPECT_EQ(j.at("use_sliding_window"), false);
}

// GPT-2 HF tensors built by hand from known values: c_attn is a Conv1D, y = x W + b with W
// (C, 3C) = [Wq | Wk | Wv] along columns. Old-style names carry the "transformer." prefix and
// mask buffers; the tied lm_head is ignored.
TEST(HfNames, Gpt2Conv1DIsSplitAndTransposed) {
  ModelConfig c = models::preset("gpt2-tiny");
  c.vocab_size = 10;
  c.padded_vocab = 128;
  c.n_layer = 1;
  c.n_embd = 4;
  c.n_head = c.n_kv_head = 2;
  c.head_dim = 2;
  c.intermediate = 16;
  c.max_seq_len = 3;
  const int64_t C = 4;
  auto filled = [](Shape s, double base) {
    std::vector<double> v(size_t(numel_of(s)));
    for (size_t k = 0; k < v.size(); ++k) v[k] = base + double(k);
    return Tensor::from_vector(v, s);
  };
  std::map<std::string, Tensor> hf = {
      {"transformer.wte.weight", filled({10, C}, 1000)},
      {"transformer.wpe.weight", filled({3, C}, 2000)},
      {"transformer.h.0.ln_1.weight", filled({C}, 1)},
      {"transformer.h.0.ln_1.bias", filled({C}, 2)},
      {"transformer.h.0.attn.c_attn.weight", filled({C, 3 * C}, 0)},  // W[i][j] = 12 i + j
      {"transformer.h.0.attn.c_attn.bias", filled({3 * C}, 500)},
      {"transformer.h.0.attn.c_proj.weight", filled({C, C}, 3000)},
      {"transformer.h.0.attn.c_proj.bias", filled({C}, 3)},
      {"transformer.h.0.ln_2.weight", filled({C}, 4)},
      {"transformer.h.0.ln_2.bias", filled({C}, 5)},
      {"transformer.h.0.mlp.c_fc.weight", filled({C, 16}, 4000)},
      {"transformer.h.0.mlp.c_fc.bias", filled({16}, 6)},
      {"transformer.h.0.mlp.c_proj.weight", filled({16, C}, 5000)},
      {"transformer.h.0.mlp.c_proj.bias", filled({C}, 7)},
      {"transformer.ln_f.weight", filled({C}, 8)},
      {"transformer.ln_f.bias", filled({C}, 9)},
      {"transformer.h.0.attn.bias", Tensor::ones({1, 1, 3, 3})},
      {"transformer.h.0.attn.masked_bias", Tensor::full({}, -1e4)},
      {"lm_head.weight", filled({10, C}, 1000)},
  };
  std::map<std::string, Tensor> s = models::from_hf_tensors(c, hf);
  auto at = [&](const std::string& name, int64_t r, int64_t k) { return s.at(name).data<float>()[r * s.at(name).size(1) + k]; };
  for (int64_t o = 0; o < C; ++o)
    for (int64_t i = 0; i < C; ++i) {
      EXPECT_EQ(at("layers.0.attn.wq.weight", o, i), 12 * i + o);
      EXPECT_EQ(at("layers.0.attn.wk.weight", o, i), 12 * i + C + o);
      EXPECT_EQ(at("layers.0.attn.wv.weight", o, i), 12 * i + 2 * C + o);
      EXPECT_EQ(at("layers.0.attn.wo.weight", o, i), 3000 + 4 * i + o);
    }
  EXPECT_EQ(s.at("layers.0.attn.wv.bias").to_vector(), (std::vector<double>{508, 509, 510, 511}));
  EXPECT_EQ(at("layers.0.mlp.fc.weight", 13, 2), 4000 + 16 * 2 + 13);
  EXPECT_EQ(at("layers.0.mlp.proj.weight", 1, 15), 5000 + 4 * 15 + 1);
  EXPECT_EQ(at("tok_emb.weight", 9, 3), 1000 + 9 * 4 + 3);
  for (int64_t r = 10; r < 128; ++r) EXPECT_EQ(at("tok_emb.weight", r, 0), 0.0f);

  // The Conv1D product by hand equals Loom's linear on the k slice.
  const std::vector<double> x = {1, -2, 3, 0.5};
  Tensor yk = ops::linear(Tensor::from_vector(x, {1, C}), s.at("layers.0.attn.wk.weight"), s.at("layers.0.attn.wk.bias"));
  for (int64_t j = 0; j < C; ++j) {
    double y = 500 + double(C + j);
    for (int64_t i = 0; i < C; ++i) y += x[size_t(i)] * double(12 * i + C + j);
    EXPECT_EQ(yk.to_vector()[size_t(j)], y);
  }

  // And back: the unprefixed HF names, without the buffers or the tied head.
  std::map<std::string, Tensor> back = models::to_hf_tensors(c, s);
  EXPECT_EQ(back.size(), 16u);
  for (const auto& [name, t] : back) EXPECT_EQ(bytes_of(t), bytes_of(hf.at("transformer." + name))) << name;

  // Half-precision files load as f32.
  std::map<std::string, Tensor> half;
  for (const auto& [name, t] : back) half[name] = ops::cast(t, DType::bf16);
  EXPECT_EQ(models::from_hf_tensors(c, half).at("layers.0.attn.wq.weight").dtype(), DType::f32);
}

TEST(HfNames, RejectsMissingExtraAndMisshapedTensors) {
  const ModelConfig c = models::preset("gpt2-tiny");
  nn::TransformerLM m(c);
  const std::map<std::string, Tensor> hf = models::to_hf_tensors(c, m.state_dict());
  auto with = [&](auto edit) {
    std::map<std::string, Tensor> h = hf;
    edit(h);
    return [h, &c] { models::from_hf_tensors(c, h); };
  };
  expect_error(with([](auto& h) { h.erase("h.1.mlp.c_fc.bias"); }), {"hf: missing tensor h.1.mlp.c_fc.bias"});
  expect_error(with([](auto& h) { h["h.2.ln_1.weight"] = Tensor::ones({64}); }), {"unexpected tensor h.2.ln_1.weight", "2-layer gpt2"});
  expect_error(with([](auto& h) {
                 h["wpe.weight"] = Tensor::ones({64, 64});
               }),
               {"hf: tensor wpe.weight has shape [64, 64], the gpt2 config expects [128, 64]"});
  expect_error(with([](auto& h) {
                 h["h.0.attn.c_attn.weight"] = Tensor::ones({192, 64});
               }),
               {"c_attn.weight has shape [192, 64]", "[64, 192]"});
  expect_error(with([](auto& h) { h["ln_f.bias"] = Tensor::zeros({64}, DType::i32); }), {"ln_f.bias has dtype i32"});
  expect_error(with([](auto& h) { h["transformer.ln_f.bias"] = Tensor::zeros({64}); }), {"ln_f.bias appears both with and without"});

  auto state = [&](auto edit) {
    std::map<std::string, Tensor> s = m.state_dict();
    edit(s);
    return [s, &c] { models::to_hf_tensors(c, s); };
  };
  expect_error(state([](auto& s) { s.erase("layers.0.attn.wk.weight"); }), {"missing Loom tensor layers.0.attn.wk.weight"});
  expect_error(state([](auto& s) { s["lm_head.weight"] = Tensor::ones({256, 64}); }), {"unexpected Loom tensor lm_head.weight"});
  expect_error(state([](auto& s) { s["norm.bias"] = Tensor::ones({65}); }), {"Loom tensor norm.bias has shape [65]"});
}

TEST(HfCheckpoint, LoadsShardedDirectories) {
  TempDir dir;
  const ModelConfig c = models::preset("llama-tiny");
  nn::TransformerLM m(c);
  m.init(3);
  save_hf(dir / "m", c, m.state_dict());
  TensorMap all = read_safetensors(dir / "m" / "model.safetensors");
  TensorMap shard[2];
  json weight_map;
  int k = 0;
  for (const auto& [name, t] : all) {
    const std::string file = fmt::format("model-0000{}-of-00002.safetensors", k % 2 + 1);
    shard[k++ % 2][name] = ops::clone(t);
    weight_map[name] = file;
  }
  all.clear();
  fs::remove(dir / "m" / "model.safetensors");
  write_safetensors(dir / "m" / "model-00001-of-00002.safetensors", shard[0]);
  write_safetensors(dir / "m" / "model-00002-of-00002.safetensors", shard[1]);
  write_bytes(dir / "m" / "model.safetensors.index.json", json{{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}.dump());
  expect_same_state(load_hf(dir / "m").state, m.state_dict());
}

TEST(HfCheckpoint, SaveIsAtomicAndRefusesToClobber) {
  TempDir dir;
  const ModelConfig c = models::preset("gpt2-tiny");
  nn::TransformerLM a(c), b(c);
  a.init(1);
  b.init(2);
  save_hf(dir / "m/", c, a.state_dict());  // a trailing slash names the same directory
  expect_error([&] { save_hf(dir / "m", c, b.state_dict()); }, {"exists and is not empty"});
  std::map<std::string, Tensor> bad = b.state_dict();
  bad.erase("norm.weight");
  expect_error([&] { save_hf(dir / "m", c, bad, true); }, {"missing Loom tensor norm.weight"});
  expect_same_state(load_hf(dir / "m").state, a.state_dict());
  save_hf(dir / "m", c, b.state_dict(), true);
  expect_same_state(load_hf(dir / "m").state, b.state_dict());
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1);  // no temporaries left

  write_bytes(dir / "file", "x");
  expect_error([&] { save_hf(dir / "file", c, a.state_dict(), true); }, {"exists and is not a directory"});
}

TEST(HfCheckpoint, LoadErrorsNameTheFile) {
  TempDir dir;
  const ModelConfig c = models::preset("gpt2-tiny");
  nn::TransformerLM m(c);
  save_hf(dir / "m", c, m.state_dict());
  expect_error([&] { load_hf(dir / "nothing"); }, {"is not a directory"});
  TempDir empty;
  expect_error([&] { load_hf(empty.path()); }, {"has no config.json"});

  json cfg = json::parse(read_bytes(dir / "m" / "config.json"));
  cfg["n_layer"] = 3;
  write_bytes(dir / "m" / "config.json", cfg.dump());
  expect_error([&] { load_hf(dir / "m"); }, {(dir / "m").string(), "hf: missing tensor h.2.ln_1.weight"});
  cfg.erase("n_embd");
  write_bytes(dir / "m" / "config.json", cfg.dump());
  expect_error([&] { load_hf(dir / "m"); }, {(dir / "m" / "config.json").string(), "field 'n_embd' is missing"});
  write_bytes(dir / "m" / "config.json", "{\"model_type\": ");
  expect_error([&] { load_hf(dir / "m"); }, {"config.json: invalid JSON"});
}

TEST(HfConfig, RoundTripsEveryPreset) {
  for (const std::string& name : models::preset_names()) {
    SCOPED_TRACE(name);
    const ModelConfig c = models::preset(name);
    expect_same_config(models::config_from_hf_json(models::hf_config_json(c)), c);
  }
  const json j = models::hf_config_json(models::preset("llama3.2-1B"));
  EXPECT_EQ(j.at("architectures")[0], "LlamaForCausalLM");
  EXPECT_EQ(j.at("num_key_value_heads"), 8);
  EXPECT_EQ(j.at("rope_theta"), 500000.0);
  EXPECT_EQ(models::hf_config_json(models::preset("gpt2-124M")).at("n_inner"), nullptr);
}

TEST(HfConfig, ReadsHuggingFaceConfigs) {
  // As published for openai-community/gpt2 (abridged) and mistralai/Mistral-7B-v0.1.
  const json gpt2 = json::parse(R"({"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
    "bos_token_id": 50256, "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024,
    "n_embd": 768, "n_head": 12, "n_layer": 12, "n_positions": 1024, "vocab_size": 50257})");
  expect_same_config(models::config_from_hf_json(gpt2), models::preset("gpt2-124M"));
  const json mistral = json::parse(R"({"architectures": ["MistralForCausalLM"], "hidden_act": "silu", "hidden_size": 4096,
    "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mistral", "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096,
    "tie_word_embeddings": false, "torch_dtype": "bfloat16", "vocab_size": 32000})");
  const ModelConfig m = models::config_from_hf_json(mistral);
  EXPECT_EQ(m.n_kv_head, 8);
  EXPECT_EQ(m.head_dim, 128);
  EXPECT_EQ(m.max_seq_len, 4096);  // capped at the window, where full attention is exact
  EXPECT_FALSE(m.qkv_bias);
  // As published for Qwen/Qwen3-0.6B: head_dim 128 against hidden_size / heads = 64.
  const json qwen3 = json::parse(R"({"architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu", "hidden_size": 1024,
    "initializer_range": 0.02, "intermediate_size": 3072, "max_position_embeddings": 40960, "max_window_layers": 28,
    "model_type": "qwen3", "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8, "rms_norm_eps": 1e-06,
    "rope_scaling": null, "rope_theta": 1000000, "sliding_window": null, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
    "transformers_version": "4.51.0", "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})");
  expect_same_config(models::config_from_hf_json(qwen3), models::preset("qwen3-0.6B"));
  // transformers >= 5 writes RoPE's base inside rope_parameters.
  json v5 = qwen3;
  v5.erase("rope_theta");
  v5["rope_parameters"] = {{"rope_theta", 1000000.0}, {"rope_type", "default"}};
  expect_same_config(models::config_from_hf_json(v5), models::preset("qwen3-0.6B"));
}

TEST(HfConfig, RejectsWhatLoomCannotRun) {
  const json base = models::hf_config_json(models::preset("llama-tiny"));
  auto with = [&](const std::string& key, const json& value) {
    json j = base;
    j[key] = value;
    return [j] { models::config_from_hf_json(j); };
  };
  expect_error(with("model_type", "bert"), {"model_type 'bert' is not supported"});
  expect_error(with("hidden_size", "64"), {"field 'hidden_size' is \"64\", not a positive integer"});
  expect_error(with("num_hidden_layers", -1), {"field 'num_hidden_layers' is -1"});
  expect_error(with("rope_scaling", {{"rope_type", "llama3"}, {"factor", 32.0}}), {"rope_scaling", "is not supported"});
  expect_error(with("rope_parameters", {{"rope_type", "yarn"}, {"rope_theta", 1e6}}), {"entry \"rope_type\": \"yarn\" is not supported"});
  expect_error(with("rope_parameters", {{"rope_theta", 1e6}, {"partial_rotary_factor", 0.25}}), {"\"partial_rotary_factor\": 0.25"});
  expect_error(with("rope_parameters", {{"full_attention", {{"rope_theta", 1e6}}}}), {"have no rope_theta"});
  expect_error(with("rope_parameters", {{"rope_theta", 1e6}}), {"rope_theta 10000.0 differs from rope_parameters' 1000000"});
  expect_error(with("hidden_act", "gelu"), {"hidden_act 'gelu' is not supported"});
  expect_error(with("attention_bias", true), {"attention_bias / mlp_bias are not supported"});
  expect_error(with("num_key_value_heads", 3), {"n_head 4 is not a multiple of n_kv_head 3"});
  expect_error(with("rms_norm_eps", "small"), {"field 'rms_norm_eps' is \"small\", not a number"});
  json g = models::hf_config_json(models::preset("gpt2-tiny"));
  g["activation_function"] = "gelu";
  expect_error([&] { models::config_from_hf_json(g); }, {"activation_function 'gelu' is not supported"});
  g["activation_function"] = "gelu_new";
  g["scale_attn_by_inverse_layer_idx"] = true;
  expect_error([&] { models::config_from_hf_json(g); }, {"attention scaled other than by 1/sqrt(head_dim)"});
  expect_error([] { models::config_from_hf_json(json::array()); }, {"expected a JSON object"});

  // A preset with one field edited away from its family's: neither its config.json nor its names.
  auto unmappable = [](const char* preset, auto edit, const std::string& want) {
    ModelConfig c = models::preset(preset);
    edit(c);
    expect_error([&] { models::hf_config_json(c); }, {want});
    expect_error([&] { models::hf_tensor_map(c); }, {want});
  };
  unmappable("gpt2-tiny", [](ModelConfig& c) { c.rms_norm = true; }, "hf: a gpt2 model needs rms_norm = false (the config has true)");
  unmappable("llama-tiny", [](ModelConfig& c) { c.qkv_bias = true; }, "hf: a llama model needs qkv_bias = false");
  unmappable("qwen3-tiny", [](ModelConfig& c) { c.qk_norm = false; }, "hf: a qwen3 model needs qk_norm = true");
  unmappable("qwen2-tiny", [](ModelConfig& c) { c.qk_norm = true; }, "hf: a qwen2 model needs qk_norm = false");
  json q3 = models::hf_config_json(models::preset("qwen3-tiny"));
  q3["attention_bias"] = true;  // Qwen3's would put biases on q, k, v and o
  expect_error([&] { models::config_from_hf_json(q3); }, {"attention_bias / mlp_bias are not supported for qwen3"});
}
