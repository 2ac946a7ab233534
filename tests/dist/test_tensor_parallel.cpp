// Tensor parallelism over the whole world (1, 2 or 4 ranks): the loss, and every parameter's
// gradient, equal those of the whole model in one process — a sharded parameter's gradient being
// the matching block of the whole one, its rows past the whole vocabulary (padding for tp) zero —
// for GPT-2 (biases, GELU MLP, tied head; its 256-token vocabulary padded to 512 at 4 ranks) and
// Qwen2 (q/k/v biases, grouped-query attention, SwiGLU, tied head; at 4 ranks each of its 2 kv
// heads replicated on 2), Qwen3 (per-head q/k norms, whole on every rank, their gradients summed
// over the heads of all ranks; head_dim 32 != C/H) and LLaMA (untied head, one kv head replicated
// on every rank) shapes; GPT-2, Qwen2 and Qwen3 also with sequence parallelism. LoRA (on float,
// NF4 and int8 bases, with dropout) and frozen parameters (training.trainable) alike.
#include "loom/autograd/function.h"
#include "loom/core/rng.h"
#include "loom/nn/lora.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/shape.h"
#include "loom/parallel/tensor_parallel.h"
#include "loom/quant/linear.h"
#include "tests/dist/dist_test.h"

namespace loom::dist::test {
namespace {

// Largest |a - b| over the elements, relative to max(1, largest |b|).
double rel_err(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  double err = 0, scale = 1;
  for (size_t i = 0; i < x.size(); ++i) err = std::max(err, std::abs(x[i] - y[i])), scale = std::max(scale, std::abs(y[i]));
  return err / scale;
}

// adapt: what the trainer does to the whole model before tensor parallelism (LoRA, a quantised
// base, freezing), done to both models alike; then only the trainable parameters have gradients.
void expect_matches_one_process(models::ModelConfig c, bool sequence_parallel = false, const std::string& what_adapted = "",
                                const std::function<void(nn::TransformerLM&)>& adapt = nullptr) {
  const int rank = world()->rank();
  Tensor ids = ops::cast(ops::mul(rand({2, 13}, {9, 0}), double(c.vocab_size)), DType::i64);
  Tensor in = ops::narrow(ids, 1, 0, 12), tgt = ops::narrow(ids, 1, 1, 12);
  nn::TransformerLM whole(c), split(c);
  whole.init(3);
  split.init(3);
  if (adapt) {
    adapt(whole);
    adapt(split);
  }
  const parallel::TensorParallelLayout layout = parallel::apply_tensor_parallel(split, world(), sequence_parallel);
  Tensor want = whole.loss(whole.forward(in), tgt), got = split.loss(split.forward(in), tgt);
  const std::string what = c.family + (sequence_parallel ? " sequence parallel" : "") + what_adapted;
  EXPECT_LE(rel_err(got, want), 1e-5) << what << ": loss " << got.item() << " vs " << want.item();
  want.backward();
  got.backward();
  const auto grads = whole.state_dict();
  for (const auto& [name, p] : split.named_parameters()) {
    ASSERT_EQ(p.requires_grad(), grads.at(name).requires_grad()) << what << ": " << name << " is frozen in one model only";
    if (!p.requires_grad()) {
      EXPECT_FALSE(p.grad().defined()) << what << ": " << name << " is frozen but has a gradient";
      continue;
    }
    Tensor g = grads.at(name).grad(), mine = p.grad();
    const parallel::TensorParallelLayout::Split s = layout.split_of(name);
    if (s.dim >= 0) {
      const int64_t n = p.size(s.dim), start = rank / s.replicas * n, have = std::clamp<int64_t>(s.whole - start, 0, n);
      ASSERT_EQ(s.whole, g.size(s.dim)) << name;
      if (have < n) {
        Tensor pad = ops::narrow(mine, s.dim, have, n - have);
        EXPECT_EQ(rel_err(pad, Tensor::zeros(pad.shape())), 0.0) << name << ": padding rows";
      }
      if (have == 0) continue;
      g = ops::narrow(g, s.dim, start, have);  // this rank's block
      mine = ops::narrow(mine, s.dim, 0, have);
    }
    ASSERT_EQ(mine.shape(), g.shape()) << name;
    EXPECT_LE(rel_err(mine, g), 1e-5) << what << ": " << name;
  }
}

TEST(TensorParallel, GradientsMatchOneProcess) {
  expect_matches_one_process(models::preset("gpt2-tiny"));
  expect_matches_one_process(models::preset("qwen2-tiny"));  // 2 kv heads: each on 2 of 4 ranks
  expect_matches_one_process(models::preset("qwen3-tiny"));
  models::ModelConfig llama = models::preset("llama-tiny");
  llama.n_kv_head = 1;  // one kv head on every rank
  expect_matches_one_process(llama);
}

// Sequence parallel: 12 positions split over the ranks; norms, learned positions and the
// row-parallel biases see only their rank's positions, and their gradients are summed.
TEST(TensorParallel, SequenceParallelGradientsMatchOneProcess) {
  expect_matches_one_process(models::preset("gpt2-tiny"), true);
  expect_matches_one_process(models::preset("qwen2-tiny"), true);
  expect_matches_one_process(models::preset("qwen3-tiny"), true);
}

// LoRA on every linear (A split over a row-parallel base, B over a column-parallel one, the other
// whole), with dropout on and B not zero; on a float base with q/k/v biases (Qwen2: at 4 ranks its
// kv heads and their B replicated), with and without sequence parallelism, and on NF4 and int8
// bases, whose blocks do not line up with the quantisation's 64-blocks (int8: LoRA on q and down
// only, the other quantised linears, k and v with their biases, split on their own).
// training.trainable: freezing survives the surgery.
TEST(TensorParallel, AdaptersAndFrozenParametersMatchOneProcess) {
  auto lora = [](const std::string& quant, const std::vector<std::string>& targets = {"all-linear"}) {
    return [quant, targets](nn::TransformerLM& m) {
      if (!quant.empty()) nn::quantize_base(m, quant);
      nn::apply_lora(m, {.r = 4, .alpha = 8, .dropout = 0.25, .targets = targets}, 5);
      autograd::NoGradGuard no_grad;
      uint64_t k = 0;
      for (auto& [name, p] : m.named_parameters())
        if (name.ends_with("lora_B.weight")) ops::copy_(p, randn(p.shape(), {11, k++ * 4096}, 0.0, 0.1));
      nn::set_lora_dropout(m, 7);
    };
  };
  expect_matches_one_process(models::preset("qwen2-tiny"), false, " lora", lora(""));
  expect_matches_one_process(models::preset("qwen2-tiny"), true, " lora", lora(""));
  expect_matches_one_process(models::preset("llama-tiny"), false, " qlora nf4", lora("nf4"));
  expect_matches_one_process(models::preset("qwen2-tiny"), true, " qlora int8", lora("int8", {"q_proj", "down_proj"}));
  expect_matches_one_process(models::preset("qwen2-tiny"), false, " trainable", [](nn::TransformerLM& m) {
    nn::freeze_all_but(m, {"layers.1", "norm"});
  });
}

TEST(TensorParallel, SizesThatDoNotSplitAreNamed) {
  if (world()->size() != 4) GTEST_SKIP() << "the sizes below split over 1 or 2 ranks";
  auto expect_error = [](models::ModelConfig c, const std::string& want) {
    nn::TransformerLM model(c);
    try {
      parallel::apply_tensor_parallel(model, world());
      ADD_FAILURE() << "no error for " << want;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
  };
  models::ModelConfig c = models::preset("gpt2-tiny");
  c.n_head = c.n_kv_head = 2;
  c.head_dim = 32;
  expect_error(c, "tensor parallel: attention heads of 2 does not split over 4 ranks");
  c = models::preset("llama-tiny");
  c.intermediate = 162;
  expect_error(c, "tensor parallel: output features of 162 does not split over 4 ranks");
}

}  // namespace
}  // namespace loom::dist::test
