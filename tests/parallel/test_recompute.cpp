// Activation recompute (training.recompute = "blocks"): bit-identical losses and gradients to
// running without it, for GPT-2 and LLaMA shapes, alone and under ZeRO-3 (whose block wrapper
// gathers parameters around the recomputation); the blocks' activations are really dropped.
#include <gtest/gtest.h>

#include "loom/core/allocator.h"
#include "loom/core/rng.h"
#include "loom/dist/local_group.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/shape.h"
#include "loom/parallel/data_parallel.h"
#include "loom/parallel/recompute.h"

using namespace loom;

namespace {

struct Result {
  std::vector<double> losses;
  std::map<std::string, std::vector<double>> grads;  // of the last step, before the update
};

// Two training steps (two micro-steps each) through DataParallel on a one-rank group.
Result train(const std::string& preset, bool recompute, int zero) {
  models::ModelConfig c = models::preset(preset);
  c.n_layer = 3;
  nn::TransformerLM model(c);
  model.init(7);
  HookHandle rc = recompute ? parallel::recompute_blocks(model) : HookHandle();
  auto dp = parallel::DataParallel::create(model, std::make_shared<dist::LocalGroup>("dp"), {zero, 25.0, {}});
  Result r;
  for (uint64_t step = 0; step < 2; ++step) {
    for (uint64_t micro = 0; micro < 2; ++micro) {
      Tensor ids = ops::cast(ops::mul(rand({2, 17}, {3, (step * 2 + micro) * 34}), double(c.vocab_size)), DType::i64);
      dp->before_forward();
      Tensor loss = model.loss(model.forward(ops::narrow(ids, 1, 0, 16)), ops::narrow(ids, 1, 1, 16));
      dp->backward(loss, micro == 1);
      r.losses.push_back(loss.item());
    }
    dp->finish();
    if (step == 1 && zero == 0)
      for (const auto& [name, p] : model.named_parameters()) r.grads[name] = p.grad().to_vector();
    dp->clip_grad_norm(1.0);
    dp->step(1e-2);
    dp->zero_grad();
  }
  return r;
}

}  // namespace

TEST(Recompute, LossesAndGradientsAreBitIdentical) {
  for (const char* preset : {"gpt2-tiny", "llama-tiny"}) {
    const Result plain = train(preset, false, 0), again = train(preset, true, 0);
    EXPECT_EQ(again.losses, plain.losses) << preset;
    ASSERT_EQ(again.grads.size(), plain.grads.size());
    for (const auto& [name, g] : plain.grads) EXPECT_EQ(again.grads.at(name), g) << preset << ": " << name;
  }
}

TEST(Recompute, ComposesWithZero3) {
  const Result plain = train("llama-tiny", false, 0), zero3 = train("llama-tiny", true, 3);
  EXPECT_EQ(zero3.losses, plain.losses);
}

TEST(Recompute, DropsTheBlocksActivations) {
  // Memory held between forward and backward: with recompute only each block's input remains.
  models::ModelConfig c = models::preset("gpt2-tiny");
  c.n_layer = 4;
  auto held = [&](bool recompute, bool removed = false) {
    nn::TransformerLM model(c);
    model.init(1);
    HookHandle rc = recompute ? parallel::recompute_blocks(model) : HookHandle();
    if (removed) rc.remove();
    Tensor ids = ops::cast(ops::mul(rand({4, 64}, {5, 0}), double(c.vocab_size)), DType::i64);
    const int64_t before = int64_t(CpuAllocator::instance().stats().current_bytes);
    Tensor logits = model.forward(ids);
    return int64_t(CpuAllocator::instance().stats().current_bytes) - before;
  };
  const int64_t plain = held(false), recomputed = held(true);
  EXPECT_LT(recomputed, plain / 2) << "recompute holds " << recomputed << " bytes after forward, plain " << plain;
  EXPECT_EQ(held(true, true), plain) << "removing the handle turns recompute off";
}
