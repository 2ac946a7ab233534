// LoRA by module surgery: which modules a target adapts (Hugging Face names), what gets frozen,
// PEFT's init (B = 0 leaves the model as it was), merged == unmerged, PEFT adapter files written
// and read back, and LoRA dropout (masks, scaling, gradients, when it acts). The layer's math
// against PyTorch is in tests/parity (lora_linear, and whole models in test_peft_parity).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "loom/autograd/function.h"
#include "loom/core/error.h"
#include "loom/core/rng.h"
#include "loom/io/file_util.h"
#include "loom/io/peft.h"
#include "loom/io/safetensors.h"
#include "loom/nn/lora.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/reduce.h"
#include "loom/ops/shape.h"
#include "loom/quant/linear.h"

using namespace loom;
namespace fs = std::filesystem;

namespace {

const Tensor kIds = Tensor::from_ints({5, 17, 200, 3, 99, 42, 7, 128}, {1, 8});

std::unique_ptr<nn::TransformerLM> model(const char* preset, uint64_t seed = 3) {
  auto m = std::make_unique<nn::TransformerLM>(models::preset(preset));
  m->init(seed);
  return m;
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector()) m = std::max(m, std::abs(v));
  return m;
}

double max_diff(const Tensor& a, const Tensor& b) {
  autograd::NoGradGuard g;
  return max_abs(ops::sub(a, b));
}

void randomize_b(nn::TransformerLM& m) {
  autograd::NoGradGuard g;
  uint64_t k = 0;
  for (auto& [name, p] : m.named_parameters())
    if (name.ends_with("lora_B.weight")) ops::copy_(p, randn(p.shape(), RngKey{77, k++ * 100000}, 0.0, 0.05));
}

}  // namespace

TEST(Lora, TargetsAreHuggingFaceNamesAndTheRestIsFrozen) {
  auto m = model("llama-tiny");
  const auto paths = nn::apply_lora(*m, {.r = 4, .alpha = 8, .targets = {"q_proj", "self_attn.v_proj"}}, 1);
  ASSERT_EQ(paths.size(), size_t(2 * m->config().n_layer));
  EXPECT_EQ(paths[0], "layers.0.attn.wq");
  EXPECT_EQ(paths[1], "layers.0.attn.wv");
  int64_t trainable = 0;
  for (const auto& [name, p] : m->named_parameters()) {
    const bool lora = name.ends_with(".lora_A.weight") || name.ends_with(".lora_B.weight");
    EXPECT_EQ(p.requires_grad(), lora) << name;
    if (lora) trainable += p.numel();
  }
  const int64_t C = m->config().n_embd, H = m->config().n_head, Hkv = m->config().n_kv_head, D = m->config().head_dim;
  EXPECT_EQ(trainable, m->config().n_layer * (4 * C + 4 * H * D + 4 * C + 4 * Hkv * D));
  // The base keeps its names: its state dict still loads as before.
  EXPECT_TRUE(m->state_dict().count("layers.0.attn.wq.weight"));
  EXPECT_EQ(nn::apply_lora(*model("llama-tiny"), {.r = 2, .targets = {"all-linear"}}, 1).size(), size_t(7 * m->config().n_layer));
}

TEST(Lora, BadTargetsAreErrors) {
  EXPECT_THROW(nn::apply_lora(*model("llama-tiny"), {.r = 4, .targets = {"qkv"}}, 1), Error);
  EXPECT_THROW(nn::apply_lora(*model("gpt2-tiny"), {.r = 4, .targets = {"c_attn"}}, 1), Error);  // fused q|k|v
  EXPECT_EQ(nn::apply_lora(*model("gpt2-tiny"), {.r = 4, .targets = {"c_fc"}}, 1).size(), 2u);
  EXPECT_THROW(nn::apply_lora(*model("llama-tiny"), {.r = 0}, 1), Error);
  EXPECT_THROW(nn::apply_lora(*model("llama-tiny"), {.r = 4, .dropout = 1.0}, 1), Error);
  EXPECT_THROW(nn::apply_lora(*model("llama-tiny"), {.r = 4, .dropout = -0.1}, 1), Error);
}

// PEFT's init: A ~ U(±1/√in), B = 0, so the adapted model computes what the base did.
TEST(Lora, InitLeavesTheModelAsItWas) {
  auto base = model("qwen3-tiny"), m = model("qwen3-tiny");
  nn::apply_lora(*m, {.r = 8, .alpha = 16}, 5);
  autograd::NoGradGuard g;
  EXPECT_EQ(max_diff(base->forward(kIds), m->forward(kIds)), 0.0);
  const auto lora = std::dynamic_pointer_cast<nn::LoraLinear>(m->module_at("layers.1.mlp.up"));
  ASSERT_TRUE(lora);
  const double bound = 1.0 / std::sqrt(double(m->config().n_embd));
  EXPECT_LE(max_abs(lora->lora_A->weight), bound);
  EXPECT_GT(max_abs(lora->lora_A->weight), 0.9 * bound);
  EXPECT_EQ(max_abs(lora->lora_B->weight), 0.0);
  EXPECT_DOUBLE_EQ(lora->scale, 2.0);
  EXPECT_DOUBLE_EQ(nn::LoraConfig({.r = 16, .alpha = 8, .rslora = true}).scale(), 2.0);  // α/√r
}

// unmerged == merged == saved and reloaded (PEFT files), within 1e-4.
TEST(Lora, MergedAndReloadedAgree) {
  auto m = model("llama-tiny");
  const nn::LoraConfig cfg{.r = 4, .alpha = 8, .dropout = 0.1, .targets = {"q_proj", "k_proj", "v_proj", "o_proj", "down_proj"}};
  nn::apply_lora(*m, cfg, 9);
  randomize_b(*m);
  autograd::NoGradGuard g;
  const Tensor want = m->forward(kIds);
  auto merged = model("llama-tiny");
  std::map<std::string, Tensor> state = merged->state_dict();
  for (const auto& [path, mod] : m->named_modules())
    if (auto l = std::dynamic_pointer_cast<nn::LoraLinear>(mod)) state[path + ".weight"] = l->dense_weight();
  merged->load_state_dict(state);
  EXPECT_GT(max_diff(want, model("llama-tiny")->forward(kIds)), 1e-3);  // the adapter changes the model
  EXPECT_LT(max_diff(want, merged->forward(kIds)), 1e-4);

  const fs::path dir = fs::temp_directory_path() / ("loom_lora_" + std::to_string(getpid()));
  io::save_adapter(dir, *m, cfg, "base-dir");
  const io::TensorMap files = io::read_safetensors(dir / "adapter_model.safetensors");
  EXPECT_EQ(files.size(), size_t(2 * 5 * m->config().n_layer));
  EXPECT_EQ(files.at("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight").shape(), (Shape{4, m->config().n_embd}));
  EXPECT_EQ(files.at("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight").shape(), (Shape{m->config().n_embd, 4}));
  const auto config = nlohmann::json::parse(io::read_text_file(dir / "adapter_config.json"));
  EXPECT_EQ(config["peft_type"], "LORA");
  EXPECT_EQ(config["r"], 4);
  EXPECT_EQ(config["lora_alpha"], 8.0);
  EXPECT_EQ(config["target_modules"], nlohmann::json({"q_proj", "k_proj", "v_proj", "o_proj", "down_proj"}));
  EXPECT_EQ(config["base_model_name_or_path"], "base-dir");
  EXPECT_EQ(config["lora_dropout"], 0.1);
  EXPECT_EQ(io::read_adapter_config(dir).dropout, 0.1);
  auto reloaded = model("llama-tiny");
  io::load_adapter(dir, *reloaded);
  EXPECT_LT(max_diff(want, reloaded->forward(kIds)), 1e-6);
  auto bad = config;
  bad["lora_dropout"] = 1.0;
  std::ofstream(dir / "adapter_config.json") << bad.dump();
  EXPECT_THROW(io::read_adapter_config(dir), Error);
  fs::remove_all(dir);
}

// QLoRA: the base's linears quantised by module surgery, then LoRA on all of them. The quantised
// base registers no parameter (nor its biases: Qwen2's q/k/v), only the adapters get gradients,
// the merged state dict is the dequantised base + s·B·A with the biases as they were, and the
// adapter saved from it loads back onto the base quantised again (quantisation is deterministic).
TEST(Lora, OnAQuantisedBase) {
  for (const char* kind : {"nf4", "int8"}) {
    SCOPED_TRACE(kind);
    auto m = model("qwen2-tiny");
    std::map<std::string, Tensor> biases;
    for (auto& [name, p] : m->named_parameters())
      if (name.ends_with(".bias")) {
        autograd::NoGradGuard g;
        ops::copy_(p, randn(p.shape(), RngKey{5, biases.size() * 1000}, 0.0, 0.1));
        biases[name] = ops::clone(p.detach());
      }
    ASSERT_EQ(biases.size(), size_t(3 * m->config().n_layer));
    const std::vector<std::string> quantised = nn::quantize_base(*m, kind);
    ASSERT_EQ(quantised.size(), size_t(7 * m->config().n_layer));
    const nn::LoraConfig cfg{.r = 4, .alpha = 8};
    EXPECT_EQ(nn::apply_lora(*m, cfg, 2), quantised);
    EXPECT_THROW(nn::quantize_base(*m, kind), Error);  // LoRA is on already
    randomize_b(*m);
    for (const auto& [name, p] : m->named_parameters()) {
      const bool lora = name.ends_with(".lora_A.weight") || name.ends_with(".lora_B.weight");
      EXPECT_EQ(p.requires_grad(), lora) << name;
      EXPECT_TRUE(lora || name == "tok_emb.weight" || name.ends_with("norm.weight")) << name;  // nothing of the linears
    }
    const auto lora = std::dynamic_pointer_cast<nn::LoraLinear>(m->module_at("layers.1.attn.wk"));
    const auto q = std::dynamic_pointer_cast<nn::QuantizedLinear>(lora->base);
    ASSERT_TRUE(q);
    const std::map<std::string, Tensor> state = nn::merged_state_dict(*m);
    for (const auto& [name, b] : biases) EXPECT_EQ(state.at(name).to_vector(), b.to_vector()) << name;
    {
      autograd::NoGradGuard g;
      const Tensor w = ops::add(q->dense_weight(), ops::mul(ops::matmul(lora->lora_B->weight, lora->lora_A->weight), lora->scale));
      EXPECT_EQ(state.at("layers.1.attn.wk.weight").to_vector(), w.to_vector());
      auto merged = model("qwen2-tiny", 99);  // other values everywhere, all replaced
      merged->load_state_dict(state);
      EXPECT_LT(max_diff(m->forward(kIds), merged->forward(kIds)), 1e-4);
    }
    m->loss(m->forward(kIds), kIds).backward();
    for (const auto& [name, p] : m->named_parameters()) EXPECT_EQ(p.grad().defined(), p.requires_grad()) << name;

    const fs::path dir = fs::temp_directory_path() / ("loom_qlora_" + std::to_string(getpid()));
    io::save_adapter(dir, *m, cfg, "base-dir");
    auto reloaded = model("qwen2-tiny");
    autograd::NoGradGuard g;
    for (auto& [name, p] : reloaded->named_parameters())
      if (biases.count(name)) ops::copy_(p, biases.at(name));
    nn::quantize_base(*reloaded, kind);
    io::load_adapter(dir, *reloaded);
    fs::remove_all(dir);
    EXPECT_EQ(max_diff(m->forward(kIds), reloaded->forward(kIds)), 0.0);
  }
  EXPECT_THROW(nn::quantize_base(*model("llama-tiny"), "nf3"), Error);
}

TEST(Lora, FreezeAllButPatterns) {
  auto m = model("llama-tiny");
  nn::freeze_all_but(*m, {"layers.1", "norm"});
  for (const auto& [name, p] : m->named_parameters())
    EXPECT_EQ(p.requires_grad(), name.starts_with("layers.1.") || name.starts_with("norm.")) << name;
  EXPECT_THROW(nn::freeze_all_but(*model("llama-tiny"), {"layers.99"}), Error);
}

namespace {

// A LoraLinear of `in` features whose output is its adapter's dropped-out input: W = 0, r = in,
// A = B = I, s = 1, so y = dropout(x), and for x of ones the mask itself (0 or 1 / (1 - p)). Built
// with `seed`, it draws the masks of any LoraLinear built with that seed and input width.
std::shared_ptr<nn::LoraLinear> probe(int64_t in, double p, uint64_t seed) {
  auto l = std::make_shared<nn::LoraLinear>(std::make_shared<nn::Linear>(in, in, false),
                                            nn::LoraConfig{.r = in, .alpha = double(in), .dropout = p}, seed);
  std::vector<double> eye(size_t(in * in), 0.0);
  for (int64_t i = 0; i < in; ++i) eye[size_t(i * in + i)] = 1.0;
  autograd::NoGradGuard g;
  for (Tensor* w : {&l->lora_A->weight, &l->lora_B->weight}) ops::copy_(*w, Tensor::from_vector(eye, {in, in}));
  return l;
}

Tensor mask(int64_t sequences, int64_t T, int64_t in, double p, uint64_t seed, int64_t first) {
  auto l = probe(in, p, seed);
  l->first_sequence = first;
  autograd::NoGradGuard g;
  return l->forward(Tensor::full({sequences, T, in}, 1.0));
}

}  // namespace

// PEFT's nn.Dropout(p) on the adapter's input: each element zeroed with probability p, the rest
// scaled by 1 / (1 - p), exactly.
TEST(LoraDropout, MaskStatisticsAndScaling) {
  for (double p : {0.1, 0.25, 0.5}) {
    const std::vector<double> m = mask(8, 32, 64, p, 3, 0).to_vector();
    int64_t zeros = 0;
    for (double v : m) {
      if (v == 0) ++zeros;
      else ASSERT_EQ(v, double(float(1.0 / (1.0 - p)))) << p;
    }
    const double n = double(m.size()), frac = double(zeros) / n, sigma = std::sqrt(p * (1 - p) / n);
    EXPECT_NEAR(frac, p, 4 * sigma) << "p " << p << " over " << m.size() << " elements";
  }
}

// A sequence's mask depends on its index in the data stream and the module, not on the batch it
// comes in: 4 sequences from 10 are 2 from 10 and 2 from 12.
TEST(LoraDropout, MaskFollowsTheSequenceAndTheModule) {
  const Tensor four = mask(4, 6, 16, 0.5, 7, 10);
  EXPECT_EQ(ops::narrow(four, 0, 0, 2).to_vector(), mask(2, 6, 16, 0.5, 7, 10).to_vector());
  EXPECT_EQ(ops::narrow(four, 0, 2, 2).to_vector(), mask(2, 6, 16, 0.5, 7, 12).to_vector());
  auto agree = [](const Tensor& a, const Tensor& b) {
    const std::vector<double> x = a.to_vector(), y = b.to_vector();
    double same = 0;
    for (size_t i = 0; i < x.size(); ++i) same += x[i] == y[i];
    return same / double(x.size());
  };
  // Independent masks agree on about half the elements at p = 0.5.
  EXPECT_LT(agree(mask(2, 6, 16, 0.5, 7, 10), mask(2, 6, 16, 0.5, 7, 11)), 0.6);  // another sequence
  EXPECT_LT(agree(mask(2, 6, 16, 0.5, 7, 10), mask(2, 6, 16, 0.5, 8, 10)), 0.6);  // another module
}

// y = W x + b + s · B A (x ⊙ m), and every gradient through the same mask m.
TEST(LoraDropout, ForwardAndGradientsUseTheMask) {
  auto base = std::make_shared<nn::Linear>(16, 12, true);
  {
    autograd::NoGradGuard g;
    ops::copy_(base->weight, randn({12, 16}, {1, 0}));
    ops::copy_(base->bias, randn({12}, {2, 0}));
  }
  nn::LoraLinear lora(base, {.r = 4, .alpha = 8, .dropout = 0.3}, 9);
  {
    autograd::NoGradGuard g;
    ops::copy_(lora.lora_B->weight, randn({12, 4}, {3, 0}));
  }
  lora.first_sequence = 7;
  Tensor x = randn({3, 5, 16}, {4, 0}), xr = x.detach();
  x.set_requires_grad(true);
  xr.set_requires_grad(true);
  const Tensor R = randn({3, 5, 12}, {5, 0});
  ops::sum(ops::mul(lora.forward(x), R)).backward();
  const Tensor A = lora.lora_A->weight.detach(), B = lora.lora_B->weight.detach();
  Tensor a = A.detach(), b = B.detach();
  a.set_requires_grad(true);
  b.set_requires_grad(true);
  const Tensor m = mask(3, 5, 16, 0.3, 9, 7);
  const Tensor want = ops::add(ops::linear(xr, base->weight.detach(), base->bias.detach()),
                               ops::mul(ops::linear(ops::linear(ops::mul(xr, m), a), b), 2.0));
  ops::sum(ops::mul(want, R)).backward();
  autograd::NoGradGuard g;
  EXPECT_LT(max_diff(lora.forward(x.detach()), want), 1e-5);
  EXPECT_LT(max_diff(x.grad(), xr.grad()), 1e-5);
  EXPECT_LT(max_diff(lora.lora_A->weight.grad(), a.grad()), 1e-5);
  EXPECT_LT(max_diff(lora.lora_B->weight.grad(), b.grad()), 1e-5);
}

// Dropout acts only while a position is set (training forwards): not otherwise, and p = 0 or a
// merge never; the twin with p = 0 computes what the model without dropout does.
TEST(LoraDropout, OnlyWhileSetAndNeverAtZero) {
  auto dropped = model("llama-tiny"), plain = model("llama-tiny");
  nn::apply_lora(*dropped, {.r = 4, .alpha = 8, .dropout = 0.5}, 2);
  nn::apply_lora(*plain, {.r = 4, .alpha = 8}, 2);
  randomize_b(*dropped);
  randomize_b(*plain);
  autograd::NoGradGuard g;
  const std::vector<double> want = plain->forward(kIds).to_vector();
  EXPECT_EQ(dropped->forward(kIds).to_vector(), want);
  nn::set_lora_dropout(*dropped, 0);
  nn::set_lora_dropout(*plain, 0);
  EXPECT_GT(max_diff(dropped->forward(kIds), plain->forward(kIds)), 1e-3);
  EXPECT_EQ(plain->forward(kIds).to_vector(), want);  // p = 0 with a position: no dropout
  const std::map<std::string, Tensor> merged = nn::merged_state_dict(*plain);
  for (const auto& [name, w] : nn::merged_state_dict(*dropped)) EXPECT_EQ(w.to_vector(), merged.at(name).to_vector()) << name;
  nn::set_lora_dropout(*dropped, std::nullopt);
  EXPECT_EQ(dropped->forward(kIds).to_vector(), want);
  EXPECT_THROW(nn::set_lora_dropout(*dropped, -1), Error);  // a batch without a position
  nn::set_lora_dropout(*plain, -1);                          // fine without dropout
}
