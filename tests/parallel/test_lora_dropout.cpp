// LoRA dropout in the training step (Parallelized::forward_backward sets each micro-batch's
// position): activation recompute reruns the blocks with the same masks (losses and gradients
// bit-identical to running without it), the masks follow the sequences (one micro-batch of 4 is
// two of 2), evaluation after training has no dropout, and the dropout really acts.
#include <gtest/gtest.h>

#include "loom/autograd/function.h"
#include "loom/core/error.h"
#include "loom/core/rng.h"
#include "loom/dist/local_group.h"
#include "loom/nn/lora.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/shape.h"
#include "loom/parallel/parallelize.h"

using namespace loom;

namespace {

constexpr int64_t kT = 16, kPerStep = 4;

struct Steps {
  std::vector<double> losses;
  std::map<std::string, std::vector<double>> grads;  // the LoRA parameters', at the last step before the update
  double eval = 0, eval_without_dropout = 0;         // Parallelized::evaluate after training; a p = 0 twin's loss
};

nn::LoraConfig lora(const std::string& preset, double p) {
  // GPT-2's c_attn is fused over q, k and v, which one adapter cannot cover: all-linear is refused there.
  return {.r = 4, .alpha = 8, .dropout = p, .targets = preset.starts_with("gpt2") ? std::vector<std::string>{"c_fc", "c_proj"}
                                                                                  : std::vector<std::string>{"all-linear"}};
}

std::unique_ptr<nn::TransformerLM> adapted(const std::string& preset, double p) {
  models::ModelConfig c = models::preset(preset);
  c.n_layer = 2;
  auto m = std::make_unique<nn::TransformerLM>(c);
  m->init(7);
  nn::apply_lora(*m, lora(preset, p), 3);
  return m;
}

// `rows` sequences from stream position `first`; sequence g's tokens depend on g alone.
data::Batch batch(int64_t first, int64_t rows, int64_t V) {
  Tensor ids = ops::cast(ops::mul(rand({rows, kT + 1}, {11, uint64_t(first * (kT + 1))}), double(V)), DType::i64);
  return {ops::contiguous(ops::narrow(ids, 1, 0, kT)), ops::contiguous(ops::narrow(ids, 1, 1, kT)), Tensor(), first};
}

// Two AdamW steps of kPerStep sequences each, in micro-batches of `rows`, on one rank.
Steps train(const std::string& preset, double p, bool recompute, int64_t rows) {
  auto model = adapted(preset, p);
  const int64_t V = model->config().vocab_size;
  dist::Mesh mesh(std::make_shared<dist::LocalGroup>("world"), {});
  parallel::ParallelConfig pc;
  pc.recompute = recompute;
  auto par = parallel::parallelize(*model, mesh, pc);
  Steps r;
  for (int64_t step = 0; step < 2; ++step) {
    std::vector<data::Batch> micro;
    for (int64_t s = 0; s < kPerStep; s += rows) micro.push_back(batch(step * kPerStep + s, rows, V));
    r.losses.push_back(par->forward_backward(micro, 1.0 / double(kPerStep * kT)));
    if (step == 1)
      for (const auto& [name, w] : model->named_parameters())
        if (w.requires_grad()) r.grads[name] = w.grad().to_vector();
    par->data().step(1e-2);
    par->data().zero_grad();
  }
  const data::Batch val = batch(1000, 2, V);
  r.eval = par->evaluate({val});
  auto twin = adapted(preset, 0.0);
  twin->load_state_dict(model->state_dict());
  autograd::NoGradGuard no_grad;
  r.eval_without_dropout = twin->loss(twin->forward(val.inputs), val.targets, ops::Reduction::sum).item();  // evaluate sums
  return r;
}

void expect_close(const Steps& got, const Steps& want, double tol, const std::string& what) {
  ASSERT_EQ(got.losses.size(), want.losses.size());
  for (size_t i = 0; i < want.losses.size(); ++i) EXPECT_NEAR(got.losses[i], want.losses[i], tol * std::abs(want.losses[i])) << what;
  ASSERT_EQ(got.grads.size(), want.grads.size());
  for (const auto& [name, g] : want.grads) {
    double scale = 0, err = 0;
    for (size_t i = 0; i < g.size(); ++i) scale = std::max(scale, std::abs(g[i])), err = std::max(err, std::abs(g[i] - got.grads.at(name)[i]));
    EXPECT_LE(err, tol * scale) << what << ": " << name;
  }
}

}  // namespace

TEST(LoraDropoutTraining, RecomputeIsBitIdentical) {
  for (const char* preset : {"gpt2-tiny", "llama-tiny"}) {
    const Steps plain = train(preset, 0.3, false, 2), again = train(preset, 0.3, true, 2);
    EXPECT_EQ(again.losses, plain.losses) << preset;
    EXPECT_EQ(again.grads, plain.grads) << preset;
    // The dropout acts: B starts at 0, so the first losses agree, but the first update differs.
    const Steps none = train(preset, 0.0, false, 2);
    EXPECT_EQ(none.losses[0], plain.losses[0]) << preset;
    EXPECT_GT(std::abs(none.losses[1] - plain.losses[1]), 1e-5 * std::abs(plain.losses[1])) << preset;
  }
}

TEST(LoraDropoutTraining, MasksFollowTheSequencesNotTheMicroBatches) {
  expect_close(train("llama-tiny", 0.3, false, 4), train("llama-tiny", 0.3, false, 2), 1e-5, "one micro-batch of 4 vs two of 2");
}

TEST(LoraDropoutTraining, EvaluationHasNone) {
  const Steps r = train("llama-tiny", 0.5, true, 2);
  EXPECT_EQ(r.eval, r.eval_without_dropout);
}

TEST(LoraDropoutTraining, BatchesWithoutAPositionAreRefused) {
  auto model = adapted("llama-tiny", 0.1);
  dist::Mesh mesh(std::make_shared<dist::LocalGroup>("world"), {});
  auto par = parallel::parallelize(*model, mesh, {});
  data::Batch b = batch(0, 2, model->config().vocab_size);
  b.first = -1;
  EXPECT_THROW(par->forward_backward({b}, 1.0), Error);
}
