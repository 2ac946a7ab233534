// Whole-model LoRA parity with PEFT: Loom adapts a GPT-2 (Conv1D layers: fan_in_fan_out), a LLaMA
// (GQA, head_dim != C/H, rsLoRA, every linear) and a Qwen2 (GQA, q/k/v biases, tied head, lora_dropout) model of
// test_model_parity's shapes, gives every lora_B random values, and saves the base as a Hugging
// Face directory (io::save_hf) and the adapter as PEFT files (io::save_adapter). peft_reference.py
// applies those files as PEFT does, on model_reference.py's PyTorch models, knowing nothing of
// Loom; its logits must equal Loom's adapted model's, and its merge (merge_and_unload) Loom's
// merged model's. Loom's merged model (nn::merged_state_dict) and the adapter reloaded onto a
// fresh base read back from the directory (io::load_hf, io::load_adapter) equal the unmerged
// model within 1e-4.
#include <gtest/gtest.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <string>

#include <unistd.h>

#include "loom/io/hf_checkpoint.h"
#include "loom/io/peft.h"
#include "loom/loom.h"
#include "loom/nn/lora.h"
#include "parity_util.h"

using namespace loom;
namespace fs = std::filesystem;

namespace {

constexpr int64_t B = 2, T = 48;
constexpr double kLogitsTol = 1e-5, kMergedTol = 1e-4;

struct Case {
  std::string family;
  nn::LoraConfig lora;
};

// max |a - b| / max |b|.
double rel_diff(const Tensor& a, const Tensor& b) {
  double diff = 0, scale = 0;
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  for (size_t i = 0; i < x.size(); ++i) diff = std::max(diff, std::abs(x[i] - y[i])), scale = std::max(scale, std::abs(y[i]));
  return diff / scale;
}

// The model's logits over the real vocabulary (without GPT-2's padding), without autograd.
Tensor logits_of(const nn::TransformerLM& model, const Tensor& ids) {
  autograd::NoGradGuard no_grad;
  return ops::contiguous(ops::narrow(model.forward(ids), 2, 0, model.config().vocab_size));
}

class PeftParity : public ::testing::TestWithParam<Case> {};

TEST_P(PeftParity, AdapterFilesGivePeftsLogits) {
  const Case& k = GetParam();
  const models::ModelConfig c = parity::model_config(k.family);
  const fs::path dir = fs::temp_directory_path() / fmt::format("loom_peft_parity_{}_{}_{}", k.family, getpid(), std::time(nullptr));
  fs::create_directories(dir);
  parity::Inputs in(20240917);
  const Tensor ids = Tensor::from_ints(in.ints(B * T, 0, c.vocab_size), {B, T});
  parity::write_npy(dir / "ids.npy", ids);

  nn::TransformerLM model(c);
  model.init(1234);
  parity::perturb_vectors(model, in);
  io::save_hf(dir / "model", c, model.state_dict());
  const Tensor base = logits_of(model, ids);
  const std::vector<std::string> adapted = nn::apply_lora(model, k.lora, 5);
  {
    autograd::NoGradGuard no_grad;
    for (auto& [name, p] : model.named_parameters())
      if (name.ends_with(".lora_B.weight")) ops::copy_(p, in.randn(p.shape(), 0.0, 0.05));
  }
  io::save_adapter(dir / "adapter", model, k.lora, (dir / "model").string());
  const Tensor unmerged = logits_of(model, ids);

  nn::TransformerLM merged(c);
  merged.load_state_dict(nn::merged_state_dict(model));
  nn::TransformerLM reloaded(c);
  reloaded.load_state_dict(io::load_hf(dir / "model").state);
  io::load_adapter(dir / "adapter", reloaded);

  const std::string failed = parity::run_reference("peft_reference.py", dir);
  ASSERT_TRUE(failed.empty()) << failed;
  std::printf("[ parity ] %-6s %zu adapted linears; %s", k.family.c_str(), adapted.size(), parity::read_text(dir / "torch.log").c_str());
  const double effect = rel_diff(unmerged, base);
  std::printf("[ parity ] %-6s %-40s max |diff| / scale = %.2e\n", k.family.c_str(), "the adapter's effect on the logits", effect);
  EXPECT_GT(effect, 0.05) << "the adapter must change the logits for the test to mean anything";
  auto report = [&](const std::string& what, double err, double tol) {
    std::printf("[ parity ] %-6s %-40s max |diff| / scale = %.2e (tol %.0e)\n", k.family.c_str(), what.c_str(), err, tol);
    EXPECT_LE(err, tol) << what;
  };
  report("logits vs PEFT", parity::expect_close("logits", unmerged, dir / "logits.npy", kLogitsTol).rel_err, kLogitsTol);
  const Tensor merged_logits = logits_of(merged, ids);
  report("merged logits vs PEFT's merge", parity::expect_close("merged", merged_logits, dir / "merged_logits.npy", kLogitsTol).rel_err,
         kLogitsTol);
  report("merged vs unmerged", rel_diff(merged_logits, unmerged), kMergedTol);
  report("reloaded vs unmerged", rel_diff(logits_of(reloaded, ids), unmerged), kMergedTol);
  if (HasFailure())
    std::printf("[ parity ] model, adapter and references kept in %s\n", dir.string().c_str());
  else
    fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(
    Families, PeftParity,
    ::testing::Values(Case{"gpt2", {.r = 4, .alpha = 8, .targets = {"c_fc", "c_proj"}}},
                      Case{"llama", {.r = 8, .alpha = 16, .targets = {"all-linear"}, .rslora = true}},
                      // lora_dropout in the files: neither side drops anything outside training.
                      Case{"qwen2", {.r = 4, .alpha = 32, .dropout = 0.1, .targets = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj"}}}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.family; });

}  // namespace
