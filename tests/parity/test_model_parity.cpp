// Model-level parity with PyTorch (f32): GPT-2, LLaMA (GQA, head_dim != C/H, untied head), Qwen2
// (q/k/v biases, GQA, tied head) and Qwen3 (per-head q/k RMSNorms, GQA, head_dim != C/H, tied
// head) TransformerLMs against the plain-PyTorch Hugging Face models
// of model_reference.py, which load the directory io::save_hf writes. Compared: logits, loss, every
// gradient (in HF layout, through the HF name map), and the losses of 10 clipped AdamW steps.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

#include "loom/io/hf_checkpoint.h"
#include "loom/loom.h"
#include "loom/models/hf_names.h"
#include "loom/nn/transformer.h"
#include "loom/optim/adamw.h"
#include "parity_util.h"

using namespace loom;
namespace fs = std::filesystem;

namespace {

constexpr int64_t B = 2, T = 48, kSteps = 10;
constexpr double kLogitsTol = 1e-4, kLossTol = 1e-5, kGradTol = 1e-4, kStepLossTol = 1e-4;
const optim::AdamWConfig kAdamW{1e-3, 0.9, 0.95, 1e-8, 0.1};
constexpr double kMaxNorm = 1.0;

// A batch of uniform ids and targets, every 7th target ignored; written for the reference.
std::pair<Tensor, Tensor> batch(parity::Inputs& in, int64_t V, const fs::path& dir, int64_t step) {
  std::vector<int64_t> targets = in.ints(B * T, 0, V);
  for (size_t i = size_t(step % 7); i < targets.size(); i += 7) targets[i] = -100;
  Tensor ids = Tensor::from_ints(in.ints(B * T, 0, V), {B, T}), tgt = Tensor::from_ints(targets, {B, T});
  parity::write_npy(dir / fmt::format("ids_{}.npy", step), ids);
  parity::write_npy(dir / fmt::format("targets_{}.npy", step), tgt);
  return {ids, tgt};
}

// Loom's side of the comparison.
struct LoomRun {
  Tensor logits, loss;                  // step 0: (B, T, V) and ()
  std::map<std::string, Tensor> grads;  // step 0, by HF name in HF layout
  std::vector<double> losses, grad_norms;
};

// Saves the model as an HF directory, then trains kSteps steps on fresh batches, keeping step 0's
// logits, loss and gradients.
LoomRun run_loom(const models::ModelConfig& c, const fs::path& dir) {
  parity::Inputs in(20240601);
  nn::TransformerLM model(c);
  model.init(1234);
  parity::perturb_vectors(model, in);
  io::save_hf(dir / "model", c, model.state_dict());

  std::vector<Tensor> params;
  std::vector<bool> decay;
  for (auto& [name, p] : model.named_parameters()) {
    params.push_back(p);
    decay.push_back(p.ndim() == 2);
  }
  optim::AdamW opt(params, decay, kAdamW);
  LoomRun run;
  for (int64_t step = 0; step < kSteps; ++step) {
    auto [ids, targets] = batch(in, c.vocab_size, dir, step);
    Tensor logits = model.forward(ids);
    Tensor loss = model.loss(logits, targets);
    loss.backward();
    if (step == 0) {
      run.logits = ops::contiguous(ops::narrow(logits.detach(), 2, 0, c.vocab_size));
      run.loss = loss.detach();
      std::map<std::string, Tensor> grads;
      for (auto& [name, p] : model.named_parameters()) {
        LOOM_CHECK(p.grad().defined(), "Loom computed no gradient for {}", name);
        grads.emplace(name, ops::clone(p.grad()));  // clipping scales the gradients in place
      }
      run.grads = models::to_hf_tensors(c, grads);
    }
    run.losses.push_back(loss.item());
    run.grad_norms.push_back(optim::clip_grad_norm(params, kMaxNorm));
    opt.step(kAdamW.lr);
    opt.zero_grad();
  }
  return run;
}

class ModelParity : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelParity, MatchesHuggingFaceReference) {
  const std::string family = GetParam();
  const models::ModelConfig c = parity::model_config(family);
  const fs::path dir = fs::temp_directory_path() / fmt::format("loom_model_parity_{}_{}_{}", family, getpid(), std::time(nullptr));
  fs::create_directories(dir);
  const auto t0 = std::chrono::steady_clock::now();
  LoomRun loom;
  try {
    loom = run_loom(c, dir);
  } catch (const std::exception& e) {
    FAIL() << "Loom failed: " << e.what() << " (files in " << dir.string() << ")";
  }
  std::ofstream(dir / "run.json") << fmt::format(
      "{{\"steps\": {}, \"lr\": {:.17g}, \"beta1\": {:.17g}, \"beta2\": {:.17g}, \"eps\": {:.17g}, \"weight_decay\": {:.17g}, "
      "\"max_norm\": {:.17g}}}\n",
      kSteps, kAdamW.lr, kAdamW.beta1, kAdamW.beta2, kAdamW.eps, kAdamW.weight_decay, kMaxNorm);
  const auto t1 = std::chrono::steady_clock::now();
  const std::string failed = parity::run_reference("model_reference.py", dir);
  const auto t2 = std::chrono::steady_clock::now();
  ASSERT_TRUE(failed.empty()) << failed;

  auto report = [&](const std::string& what, const parity::Closeness& r, double tol) {
    std::printf("[ parity ] %-6s %-44s max |diff| / scale = %.2e (tol %.0e, scale %.3g)\n", family.c_str(), what.c_str(), r.rel_err,
                tol, r.scale);
  };
  report("logits", parity::expect_close("logits", loom.logits, dir / "logits.npy", kLogitsTol), kLogitsTol);
  report("loss", parity::expect_close("loss", loom.loss, dir / "loss.npy", kLossTol), kLossTol);
  parity::Closeness worst{0.0, 0.0};
  std::string worst_name;
  for (const auto& [hf_name, grad] : loom.grads) {
    const parity::Closeness r = parity::expect_close("grad " + hf_name, grad, dir / "grads" / (hf_name + ".npy"), kGradTol);
    if (!(r.rel_err <= worst.rel_err)) {
      worst = r;
      worst_name = hf_name;
    }
  }
  report(fmt::format("grads ({} tensors), worst {}", loom.grads.size(), worst_name), worst, kGradTol);
  const Tensor losses = Tensor::from_vector(loom.losses, {kSteps}), norms = Tensor::from_vector(loom.grad_norms, {kSteps});
  report(fmt::format("{} AdamW step losses", kSteps), parity::expect_close("step losses", losses, dir / "losses.npy", kStepLossTol),
         kStepLossTol);
  report(fmt::format("{} grad norms before clipping", kSteps),
         parity::expect_close("grad norms", norms, dir / "grad_norms.npy", kStepLossTol), kStepLossTol);
  std::printf("[ parity ] %-6s losses %.5f -> %.5f, grad norms %.3f -> %.3f; Loom %.2f s, torch (with import) %.2f s\n", family.c_str(),
              loom.losses.front(), loom.losses.back(), loom.grad_norms.front(), loom.grad_norms.back(),
              std::chrono::duration<double>(t1 - t0).count(), std::chrono::duration<double>(t2 - t1).count());
  if (HasFailure())
    std::printf("[ parity ] weights, batches and references kept in %s\n", dir.string().c_str());
  else
    fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Families, ModelParity, ::testing::Values("gpt2", "llama", "qwen2", "qwen3"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
