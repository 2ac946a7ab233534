// TransformerLM: parameter names and counts against published sizes, KV-cache decoding and greedy
// generation against the full forward pass, Qwen3's q/k norms, init statistics, and bad configs.
#include <gtest/gtest.h>

#include <cmath>

#include "loom/autograd/function.h"
#include "loom/core/allocator.h"
#include "loom/nn/transformer.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/shape.h"
#include "loom/train/generate.h"

using namespace loom;

TEST(TransformerLM, Gpt2_124MHasLlmcParameterCount) {
  nn::TransformerLM m(models::preset("gpt2-124M"));
  // FORMATS.md: GPT-2 124M is 124,475,904 floats with the vocabulary padded to 50304.
  EXPECT_EQ(m.num_parameters(), 124475904);
  auto named = m.named_parameters();
  EXPECT_EQ(named.front().first, "tok_emb.weight");
  EXPECT_EQ(named[1].first, "pos_emb.weight");
  EXPECT_EQ(named[2].first, "layers.0.attn_norm.weight");
  EXPECT_EQ(named.back().first, "norm.bias");  // tied head: no lm_head parameter
}

TEST(TransformerLM, LlamaShapesMatchHfConfigs) {
  // Qwen2-0.5B: 494,032,768 parameters (tied embeddings), as its model card states.
  nn::TransformerLM q(models::preset("qwen2-0.5B"));
  EXPECT_EQ(q.num_parameters(), 494032768);
  auto sd = q.state_dict();
  EXPECT_EQ(sd.at("layers.0.attn.wk.weight").shape(), Shape({128, 896}));  // 2 kv heads of 64
  EXPECT_TRUE(sd.count("layers.0.attn.wq.bias"));
  EXPECT_FALSE(sd.count("layers.0.attn.wo.bias"));
  EXPECT_FALSE(sd.count("lm_head.weight"));
}

TEST(TransformerLM, Qwen3ShapesMatchHfConfig) {
  // Qwen3-0.6B: 0.6B parameters, 0.44B of them outside the (tied) embedding, as its model card
  // states; counted on a deferred model (shapes, no memory).
  nn::TransformerLM q(models::preset("qwen3-0.6B"), true);
  EXPECT_EQ(q.num_parameters(), 596049920);
  EXPECT_EQ(q.num_parameters() - 151936 * 1024, 440467456);
  auto sd = q.state_dict();
  EXPECT_EQ(sd.at("layers.0.attn.wq.weight").shape(), Shape({2048, 1024}));  // 16 heads of 128, not 64
  EXPECT_EQ(sd.at("layers.0.attn.wk.weight").shape(), Shape({1024, 1024}));  // 8 kv heads of 128
  EXPECT_EQ(sd.at("layers.0.attn.wo.weight").shape(), Shape({1024, 2048}));
  EXPECT_EQ(sd.at("layers.27.attn.q_norm.weight").shape(), Shape({128}));
  EXPECT_EQ(sd.at("layers.27.attn.k_norm.weight").shape(), Shape({128}));
  EXPECT_FALSE(sd.count("layers.0.attn.wq.bias"));
  EXPECT_FALSE(sd.count("layers.0.attn.q_norm.bias"));
  EXPECT_FALSE(sd.count("lm_head.weight"));
  EXPECT_FALSE(nn::TransformerLM(models::preset("qwen2-tiny")).state_dict().count("layers.0.attn.q_norm.weight"));
}

// The q/k norms are in the forward path: scaling one head-dim channel of a layer's k_norm weight
// changes the logits (which scaling a norm that was not applied would not).
TEST(TransformerLM, Qwen3QkNormsAreApplied) {
  nn::TransformerLM m(models::preset("qwen3-tiny"));
  m.init(4);
  Tensor ids = Tensor::from_ints({5, 17, 200, 3}, {1, 4});
  const std::vector<double> before = m.forward(ids).to_vector();
  for (const Tensor& w : {m.layers[1]->attn->q_norm->weight, m.layers[0]->attn->k_norm->weight}) {
    Tensor p = w;
    p.data<float>()[3] = 2.0f;
    const std::vector<double> after = m.forward(ids).to_vector();
    EXPECT_NE(after, before);
    p.data<float>()[3] = 1.0f;
    EXPECT_EQ(m.forward(ids).to_vector(), before);
  }
}

TEST(TransformerLM, InitFollowsGpt2Rules) {
  nn::TransformerLM m(models::preset("gpt2-tiny"));
  m.init(1);
  auto sd = m.state_dict();
  auto stdev = [](const Tensor& t) {
    double s = 0, ss = 0;
    std::vector<double> v = t.to_vector();
    for (double x : v) s += x, ss += x * x;
    return std::sqrt(ss / double(v.size()) - (s / double(v.size())) * (s / double(v.size())));
  };
  EXPECT_NEAR(stdev(sd.at("tok_emb.weight")), 0.02, 0.002);
  EXPECT_NEAR(stdev(sd.at("layers.0.attn.wo.weight")), 0.02 / std::sqrt(4.0), 0.002);  // 1/sqrt(2L), L = 2
  EXPECT_EQ(sd.at("layers.1.mlp_norm.weight").to_vector(), std::vector<double>(64, 1.0));
  EXPECT_EQ(sd.at("layers.1.mlp.fc.bias").to_vector(), std::vector<double>(256, 0.0));
}

class KVCacheTest : public ::testing::TestWithParam<const char*> {};

TEST_P(KVCacheTest, IncrementalDecodingMatchesFullForward) {
  nn::TransformerLM m(models::preset(GetParam()));
  m.init(3);
  autograd::NoGradGuard no_grad;
  Tensor ids = Tensor::from_ints({5, 17, 200, 3, 99, 42, 7, 128}, {1, 8});
  Tensor full = m.forward(ids);  // (1, 8, Vp)
  nn::KVCache cache;
  Tensor first = m.forward(ops::narrow(ids, 1, 0, 5), &cache);
  std::vector<double> a = ops::narrow(full, 1, 0, 5).to_vector(), b = first.to_vector();
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-5);
  for (int64_t t = 5; t < 8; ++t) {
    Tensor step = m.forward(ops::narrow(ids, 1, t, 1), &cache);
    std::vector<double> want = ops::narrow(full, 1, t, 1).to_vector(), got = step.to_vector();
    for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(want[i], got[i], 1e-5) << "position " << t;
  }
  EXPECT_EQ(cache.length(), 8);
}

// Greedy generation through the KV cache picks, at every step, the argmax of a full forward pass
// (no cache) over the prompt and the tokens generated so far.
TEST_P(KVCacheTest, GreedyGenerationMatchesFullForwards) {
  nn::TransformerLM m(models::preset(GetParam()));
  m.init(11);
  train::GenerateOptions opt;
  opt.max_new_tokens = 6;
  opt.temperature = 0;
  std::vector<int64_t> seq = {7, 31, 250, 4};
  const std::vector<int64_t> got = train::generate(m, seq, opt);
  ASSERT_EQ(got.size(), 6u);
  autograd::NoGradGuard no_grad;
  for (int64_t token : got) {
    Tensor logits = m.forward(Tensor::from_ints(seq, {1, int64_t(seq.size())}));
    const std::vector<double> last = ops::narrow(logits, 1, int64_t(seq.size()) - 1, 1).to_vector();
    EXPECT_EQ(token, train::sample_token(last, m.config().vocab_size, opt, 0)) << "after " << seq.size() << " tokens";
    seq.push_back(token);
  }
}

// Generation ends after emitting any of the stop tokens (a tokenizer's EOS tokens).
TEST_P(KVCacheTest, GenerationStopsAtAnyStopToken) {
  nn::TransformerLM m(models::preset(GetParam()));
  m.init(11);
  train::GenerateOptions opt;
  opt.max_new_tokens = 6;
  opt.temperature = 0;
  const std::vector<int64_t> prompt = {7, 31, 250, 4};
  const std::vector<int64_t> all = train::generate(m, prompt, opt);
  ASSERT_EQ(all.size(), 6u);
  opt.stop_tokens = {-5, all[2]};
  const std::vector<int64_t> cut = train::generate(m, prompt, opt);
  const size_t first = size_t(std::find(all.begin(), all.end(), all[2]) - all.begin());
  EXPECT_EQ(cut, std::vector<int64_t>(all.begin(), all.begin() + int64_t(first) + 1));
}

INSTANTIATE_TEST_SUITE_P(Families, KVCacheTest, ::testing::Values("gpt2-tiny", "llama-tiny", "qwen2-tiny", "qwen3-tiny"));

TEST(TransformerLM, LossExcludesPaddedVocabulary) {
  models::ModelConfig c = models::preset("gpt2-tiny");
  c.vocab_size = 200;  // padded_vocab stays 256
  nn::TransformerLM m(c);
  m.init(5);
  Tensor ids = Tensor::from_ints({1, 2, 3, 4}, {1, 4}), tgt = Tensor::from_ints({2, 3, 4, 199}, {1, 4});
  Tensor logits = m.forward(ids);
  // Reference: log-softmax over the first 200 logits only.
  std::vector<double> l = logits.to_vector();
  double want = 0;
  const std::vector<int64_t> t = {2, 3, 4, 199};
  for (int64_t r = 0; r < 4; ++r) {
    double mx = -1e300, s = 0;
    for (int64_t v = 0; v < 200; ++v) mx = std::max(mx, l[size_t(r * 256 + v)]);
    for (int64_t v = 0; v < 200; ++v) s += std::exp(l[size_t(r * 256 + v)] - mx);
    want += (std::log(s) + mx - l[size_t(r * 256 + t[size_t(r)])]) / 4;
  }
  EXPECT_NEAR(m.loss(logits, tgt).item(), want, 1e-5);
  EXPECT_THROW(m.loss(logits, Tensor::from_ints({2, 3, 4, 200}, {1, 4})), Error);
}

TEST(TransformerLM, RejectsBadConfigsAndInputs) {
  models::ModelConfig c = models::preset("llama-tiny");
  c.n_kv_head = 3;
  EXPECT_THROW(nn::TransformerLM{c}, Error);
  c = models::preset("qwen3-tiny");
  c.rms_norm = false;  // the q/k norms are RMSNorms
  EXPECT_THROW(nn::TransformerLM{c}, Error);
  EXPECT_THROW(models::preset("gpt5"), Error);
  nn::TransformerLM m(models::preset("gpt2-tiny"));
  EXPECT_THROW(m.forward(Tensor::from_ints({1, 300}, {1, 2})), Error);  // id >= padded vocab
  EXPECT_THROW(m.forward(Tensor::zeros({1, 129}, DType::i64)), Error);  // longer than max_seq_len
}

namespace {
// A Linear whose output is scaled by a parameter of its own: stands in for the tensor-parallel
// and LoRA linears that module surgery will put in a Linear's place.
class ScaledLinear : public nn::Linear {
 public:
  ScaledLinear(const nn::Linear& base, double s) : nn::Linear(base.weight.size(1), base.weight.size(0), base.bias.defined()) {
    autograd::NoGradGuard no_grad;
    ops::copy_(weight, base.weight);
    if (bias.defined()) ops::copy_(bias, base.bias);
    scale = register_parameter("scale", Tensor::full({1}, s));
  }
  Tensor forward(const Tensor& x) const override { return ops::mul(nn::Linear::forward(x), scale); }
  Tensor scale;
};

// A linear around another that stands in its place (a child of no name): twice its output.
class Doubled : public nn::Linear {
 public:
  explicit Doubled(std::shared_ptr<nn::Linear> inner) : nn::Linear(Tensor(), Tensor()) {
    weight = inner->weight;
    register_module("", inner_, std::move(inner));
  }
  Tensor forward(const Tensor& x) const override { return ops::mul(inner_->forward(x), 2.0); }

 private:
  std::shared_ptr<nn::Linear> inner_;
};
}  // namespace

TEST(Module, SurgeryReplacesALinearEverywhereItIsSeen) {
  nn::TransformerLM model(models::preset("gpt2-tiny"));
  model.init(2);
  Tensor ids = Tensor::from_ints({1, 2, 3, 4, 5}, {1, 5});
  const std::vector<double> before = model.forward(ids).to_vector();
  EXPECT_EQ(model.module_at("layers.1.attn.wq").get(), model.layers[1]->attn->wq.get());
  // Scale 1: same outputs through the replacement; its parameter appears under the path.
  auto& wq = *model.layers[1]->attn->wq;
  model.replace_module("layers.1.attn.wq", std::make_shared<ScaledLinear>(wq, 1.0));
  EXPECT_NE(dynamic_cast<ScaledLinear*>(model.layers[1]->attn->wq.get()), nullptr) << "the typed member holds the replacement";
  EXPECT_EQ(model.forward(ids).to_vector(), before);
  const auto state = model.state_dict();
  EXPECT_TRUE(state.count("layers.1.attn.wq.scale"));
  EXPECT_TRUE(state.count("layers.1.attn.wq.weight"));
  // Scale 0 on the whole MLP output projection of block 0 changes the result.
  auto& proj = *model.layers[0]->mlp->proj;
  model.replace_module("layers.0.mlp.proj", std::make_shared<ScaledLinear>(proj, 0.0));
  EXPECT_NE(model.forward(ids).to_vector(), before);
  size_t linears = 0;
  for (const auto& [path, m] : model.named_modules()) linears += dynamic_cast<nn::Linear*>(m.get()) != nullptr;
  EXPECT_EQ(linears, size_t(model.config().n_layer) * 6);  // wq, wk, wv, wo, fc, proj per block
  try {
    model.replace_module("layers.0.attn.wk", std::make_shared<nn::Norm>(4, true, 1e-5));
    ADD_FAILURE() << "a Norm took a Linear's place";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'layers.0.attn.wk' cannot hold the replacement"), std::string::npos) << e.what();
  }
  EXPECT_THROW(model.module_at("layers.9.attn"), Error);
  EXPECT_THROW(model.module_at("layers.1.att"), Error);
}

// A module standing in its parent's place: its parameters and children keep the parent's path,
// named_modules lists it at that path after the parent, and paths reach through it.
TEST(Module, AChildWithoutANameStandsInItsParentsPlace) {
  nn::TransformerLM model(models::preset("gpt2-tiny"));
  model.init(2);
  const auto before = model.state_dict();
  auto inner = std::make_shared<ScaledLinear>(*model.layers[0]->attn->wq, 1.0);
  model.replace_module("layers.0.attn.wq", std::make_shared<Doubled>(inner));
  const auto after = model.state_dict();
  EXPECT_EQ(after.size(), before.size() + 1);  // + the inner's scale, under the parent's path
  EXPECT_EQ(after.at("layers.0.attn.wq.weight").impl(), inner->weight.impl());
  EXPECT_TRUE(after.count("layers.0.attn.wq.scale"));
  std::vector<nn::Module*> at;
  for (const auto& [path, m] : model.named_modules())
    if (path == "layers.0.attn.wq") at.push_back(m.get());
  ASSERT_EQ(at.size(), 2u);
  EXPECT_NE(dynamic_cast<Doubled*>(at[0]), nullptr);
  EXPECT_EQ(at[1], inner.get());
  EXPECT_EQ(model.module_at("layers.0.attn.wq").get(), at[0]);
  EXPECT_EQ(model.parameter("tok_emb.weight").defined(), false);  // parameter(): the module's own only
  EXPECT_TRUE(model.module_at("tok_emb")->parameter("weight").defined());
}

// A model built deferred holds no memory until init, and then gets exactly the values of one
// built whole; its deferred parameters cannot be read before.
TEST(TransformerLM, DeferredInitEqualsWholeInit) {
  for (const char* preset : {"gpt2-tiny", "llama-tiny", "qwen2-tiny", "qwen3-tiny"}) {
    nn::TransformerLM whole(models::preset(preset));
    whole.init(7);
    const size_t before = CpuAllocator::instance().stats().current_bytes;
    nn::TransformerLM deferred(models::preset(preset), true);
    EXPECT_EQ(CpuAllocator::instance().stats().current_bytes, before) << preset;
    EXPECT_THROW(deferred.tok_emb->weight.to_vector(), Error) << preset;
    deferred.init(7);
    const auto want = whole.state_dict();
    for (const auto& [name, p] : deferred.named_parameters()) EXPECT_EQ(p.to_vector(), want.at(name).to_vector()) << preset << " " << name;
  }
}
