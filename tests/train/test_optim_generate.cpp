// Optimizer pieces (LR schedules, global-norm clipping, AdamW on a parameter) and the
// sampler, each against a closed form or a frequency count.
#include <gtest/gtest.h>

#include <cmath>

#include "loom/optim/adamw.h"
#include "loom/train/generate.h"
#include "loom/train/checkpoint.h"
#include "loom/train/resources.h"

using namespace loom;

TEST(Schedule, WarmupCosineAndWsd) {
  optim::Schedule s{"cosine", 1.0, 0.1, 10, 110};
  EXPECT_DOUBLE_EQ(s.at(5), 0.5);
  EXPECT_DOUBLE_EQ(s.at(10), 1.0);
  EXPECT_NEAR(s.at(60), 0.1 + 0.5 * 0.9, 1e-12);  // halfway through the cosine
  EXPECT_NEAR(s.at(110), 0.1, 1e-12);
  optim::Schedule w{"wsd", 1.0, 0.0, 0, 100, 0.2};
  EXPECT_DOUBLE_EQ(w.at(80), 1.0);
  EXPECT_NEAR(w.at(90), 0.5, 1e-12);
  EXPECT_NEAR(w.at(100), 0.0, 1e-12);
  EXPECT_DOUBLE_EQ((optim::Schedule{"constant", 0.3, 0.1, 0, 10}.at(7)), 0.3);
  EXPECT_THROW((optim::Schedule{"linear", 1, 0, 0, 10}.at(5)), Error);
}

TEST(ClipGradNorm, ScalesToMaxNormAndReportsTheNormBefore) {
  Tensor a = Tensor::zeros({2}), b = Tensor::zeros({1});
  a.set_grad(Tensor::from_vector({3, 0}, {2}));
  b.set_grad(Tensor::from_vector({4}, {1}));
  EXPECT_NEAR(optim::clip_grad_norm({a, b}, 1.0), 5.0, 1e-12);
  EXPECT_NEAR(a.grad().to_vector()[0], 3.0 / 5.0, 1e-6);
  EXPECT_NEAR(b.grad().to_vector()[0], 4.0 / 5.0, 1e-6);
  b.set_grad(Tensor::from_vector({NAN}, {1}));
  EXPECT_THROW(optim::clip_grad_norm({a, b}, 1.0), Error);
}

TEST(AdamW, FirstStepMovesEachWeightByLr) {
  // With bias correction, step 1 moves every element by lr·sign(g) (|g| >> eps), plus decay.
  Tensor p = Tensor::from_vector({1, -2, 3}, {3});
  p.set_requires_grad(true);
  p.set_grad(Tensor::from_vector({0.5, -0.1, 2}, {3}));
  optim::AdamW opt({p}, {true}, {0.1, 0.9, 0.95, 1e-8, 0.5});
  opt.step(0.1);
  std::vector<double> v = p.to_vector();
  EXPECT_NEAR(v[0], 1 * (1 - 0.05) - 0.1, 1e-6);
  EXPECT_NEAR(v[1], -2 * (1 - 0.05) + 0.1, 1e-6);
  EXPECT_NEAR(v[2], 3 * (1 - 0.05) - 0.1, 1e-6);
}

TEST(Sampling, GreedyTopKTopPAndTemperature) {
  const std::vector<double> logits = {1.0, 3.0, 2.0, 0.5, 9.0};  // index 4 is padding beyond V = 4
  train::GenerateOptions greedy;
  greedy.temperature = 0;
  EXPECT_EQ(train::sample_token(logits, 4, greedy, 0), 1);
  train::GenerateOptions topk;
  topk.top_k = 1;
  EXPECT_EQ(train::sample_token(logits, 4, topk, 3), 1);
  // Frequencies at temperature 1 follow softmax over the first 4 logits; top_p 0.7 keeps {1, 2}.
  train::GenerateOptions plain, nucleus;
  nucleus.top_p = 0.7;
  std::vector<int> counts(4, 0), kept(4, 0);
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    ++counts[size_t(train::sample_token(logits, 4, plain, uint64_t(i)))];
    ++kept[size_t(train::sample_token(logits, 4, nucleus, uint64_t(i)))];
  }
  double z = std::exp(1.0) + std::exp(3.0) + std::exp(2.0) + std::exp(0.5);
  EXPECT_NEAR(counts[1] / double(n), std::exp(3.0) / z, 0.015);
  EXPECT_NEAR(counts[0] / double(n), std::exp(1.0) / z, 0.015);
  EXPECT_EQ(kept[0] + kept[3], 0);
  EXPECT_NEAR(kept[1] / double(n), std::exp(3.0) / (std::exp(3.0) + std::exp(2.0)), 0.015);
}

TEST(Resources, ThreadsPerRankHonourSlurmThenOpenMpi) {
  EXPECT_EQ(train::threads_per_rank("6", "4", 16), 6);  // Slurm's --cpus-per-task wins
  EXPECT_EQ(train::threads_per_rank(nullptr, "4", 16), 4);
  EXPECT_EQ(train::threads_per_rank(nullptr, "4", 2), 1);
  EXPECT_EQ(train::threads_per_rank("0", nullptr, 8), 8);  // an unusable value is ignored
  EXPECT_EQ(train::threads_per_rank(nullptr, nullptr, 8), 8);
}

TEST(Resources, PeakFlopsScaleWithThreadsAndNameTheirDerivation) {
  const train::PeakFlops one = train::cpu_peak_flops(1), four = train::cpu_peak_flops(4);
  EXPECT_DOUBLE_EQ(four.flops, 4 * one.flops);
  // At least a 4-wide FMA at 1 GHz per thread, at most a 16-wide one at 6 GHz.
  EXPECT_GE(one.flops, 4 * 2 * 2 * 1e9);
  EXPECT_LE(one.flops, 16 * 2 * 2 * 6e9);
  EXPECT_NE(one.how.find("1 threads × "), std::string::npos) << one.how;
}

TEST(TrainState, RoundTripsAndRejectsBadFields) {
  const train::TrainState s{12, 11, 96, 8, "[training]\nsteps = 20\n"};
  const train::TrainState back = train::parse_train_state(train::train_state_json(s), "ts.json");
  EXPECT_EQ(back.step, 12);
  EXPECT_EQ(back.optimizer_steps, 11);
  EXPECT_EQ(back.consumed_samples, 96);
  EXPECT_EQ(back.global_batch, 8);
  EXPECT_EQ(back.config_toml, s.config_toml);
  EXPECT_EQ(back.best.step, 0);  // none: no "best" written or read
  EXPECT_EQ(train::train_state_json(s).find("best"), std::string::npos);
  train::TrainState with_best = s;
  with_best.best = {10, 2.25, 1};  // eval.patience's record
  const train::TrainState b = train::parse_train_state(train::train_state_json(with_best), "ts.json");
  EXPECT_EQ(b.best.step, 10);
  EXPECT_EQ(b.best.val_loss, 2.25);
  EXPECT_EQ(b.best.evals_since, 1);
  auto error_of = [](const std::string& text) {
    try {
      train::parse_train_state(text, "ck/train_state.json");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of(R"({"step": 1, "optimizer_steps": 1, "consumed_samples": -4, "global_batch": 8, "config": ""})")
                .find("ck/train_state.json: field 'consumed_samples' must be a non-negative integer, got -4"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"step": 1, "optimizer_steps": 1, "global_batch": 8, "config": ""})").find("'consumed_samples'"), std::string::npos);
  EXPECT_NE(error_of(R"({"step": 1, "optimizer_steps": 1, "consumed_samples": 4, "global_batch": 8, "config": 3})").find("'config'"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"step": 1, "optimizer_steps": 1, "loader": {"epoch": 0, "index": 3}, "config": ""})").find("older Loom"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"step": 1, "optimizer_steps": 1, "consumed_samples": 4, "global_batch": 8, "config": "", "best": {"step": 1}})")
                .find("field 'best' must be"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"step": 1, "optimizer_steps": 1, "consumed_samples": 4, "global_batch": 8, "config": "", "best": {"step": -1, "val_loss": 1, "evals_since": 0}})")
                .find("field 'step' must be a non-negative integer"),
            std::string::npos);
  EXPECT_NE(error_of("[1, 2]").find("not a JSON object"), std::string::npos);
  EXPECT_NE(error_of("{").find("ck/train_state.json"), std::string::npos);
}
