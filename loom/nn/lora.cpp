#include "loom/nn/lora.h"

#include <cmath>

#include "loom/core/error.h"
#include "loom/autograd/function.h"
#include "loom/core/rng.h"
#include "loom/models/hf_names.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/shape.h"

namespace loom::nn {

namespace {

// A bias-free linear of shape (out, in) holding `w`.
class Weight : public Linear {
 public:
  explicit Weight(Tensor w) : Linear(std::move(w), Tensor()) {}
};

// cfg's rank, once cfg is checked.
int64_t checked_rank(const LoraConfig& cfg) {
  LOOM_CHECK(cfg.r > 0, "lora.r must be positive, got {}", cfg.r);
  LOOM_CHECK(cfg.dropout >= 0 && cfg.dropout < 1, "lora.dropout must be in [0, 1), got {}", cfg.dropout);
  return cfg.r;
}

// PEFT's initial A ~ U(±1/√in) (kaiming_uniform_(a=√5)) from seed's stream, and B = 0.
std::shared_ptr<Linear> initial_A(const Linear& base, const LoraConfig& cfg, uint64_t seed) {
  const double bound = 1.0 / std::sqrt(double(base.weight.size(1)));
  return std::make_shared<Weight>(rand({checked_rank(cfg), base.weight.size(1)}, RngKey{seed, 0}, -bound, bound));
}
std::shared_ptr<Linear> initial_B(const Linear& base, const LoraConfig& cfg) {
  return std::make_shared<Weight>(Tensor::full({base.weight.size(0), checked_rank(cfg)}, 0.0));
}

bool is_lora_tensor(const std::string& name) { return name.ends_with(".lora_A.weight") || name.ends_with(".lora_B.weight"); }

bool matches(const std::string& path, const std::string& target) {
  return path == target || (path.size() > target.size() && path.ends_with(target) &&
                            path[path.size() - target.size() - 1] == '.');
}

bool matches_pattern(const std::string& name, const std::string& p) {
  if (name == p || name.starts_with(p + ".")) return true;
  return name.find("." + p + ".") != std::string::npos || name.ends_with("." + p);
}

}  // namespace

double LoraConfig::scale() const { return rslora ? alpha / std::sqrt(double(r)) : alpha / double(r); }

LoraLinear::LoraLinear(std::shared_ptr<Linear> b, const LoraConfig& cfg, uint64_t seed)
    // The dropout stream: another Philox key than A's (seed XOR the golden ratio's 64 bits).
    : LoraLinear(b, initial_A(*b, cfg, seed), initial_B(*b, cfg), cfg.scale(), cfg.dropout, seed ^ 0x9E3779B97F4A7C15ull, b->weight.size(1), 0) {}

LoraLinear::LoraLinear(std::shared_ptr<Linear> b, std::shared_ptr<Linear> A, std::shared_ptr<Linear> B, const LoraLinear& like,
                       int64_t in_whole, int64_t in_offset)
    : LoraLinear(std::move(b), std::move(A), std::move(B), like.scale, like.dropout, like.dropout_seed, in_whole, in_offset) {
  first_sequence = like.first_sequence;
}

LoraLinear::LoraLinear(std::shared_ptr<Linear> b, std::shared_ptr<Linear> A, std::shared_ptr<Linear> B, double scale, double dropout,
                       uint64_t dropout_seed, int64_t in_whole, int64_t in_offset)
    : Linear(b->parameter("weight"), b->parameter("bias")), base(std::move(b)), scale(scale), dropout(dropout), dropout_seed(dropout_seed),
      in_whole(in_whole), in_offset(in_offset) {
  weight = base->weight;  // also a base's that is no parameter: a quantised weight's shape, its bias
  bias = base->bias;
  register_module("lora_A", lora_A, std::move(A));
  register_module("lora_B", lora_B, std::move(B));
}

Tensor LoraLinear::forward(const Tensor& x) const {
  Tensor dropped = x;
  if (first_sequence && dropout > 0) {
    const uint64_t row = uint64_t(x.numel() / x.size(0) / x.size(-1) * in_whole);  // a sequence's elements in the whole input
    dropped = ops::dropout(x, dropout, RngKey{dropout_seed, uint64_t(*first_sequence) * row}, in_whole, in_offset);
  }
  return ops::add(base->forward(x), ops::mul(lora_B->forward(lora_A->forward(dropped)), scale));
}

Tensor LoraLinear::dense_weight() const {
  autograd::NoGradGuard no_grad;
  return ops::add(base->dense_weight(), ops::mul(ops::matmul(lora_B->weight, lora_A->weight), scale));
}

std::map<std::string, std::string> hf_module_paths(const models::ModelConfig& c) {
  // GPT2LMHeadModel holds its blocks under `transformer.` (which GPT-2's tensor names may lack).
  const std::string prefix = c.family == "gpt2" ? "transformer." : "";
  std::map<std::string, std::string> out;
  for (const models::HfTensor& t : models::hf_tensor_map(c))
    for (const auto& [name, shape] : t.parts) {
      if (!name.ends_with(".weight") || shape.size() != 2) continue;
      const std::string path = name.substr(0, name.size() - 7);
      out[path] = t.parts.size() == 1 && t.hf_name.ends_with(".weight") ? prefix + t.hf_name.substr(0, t.hf_name.size() - 7) : "";
    }
  return out;
}

std::vector<std::string> apply_lora(TransformerLM& model, const LoraConfig& cfg, uint64_t seed) {
  const bool all = cfg.targets.size() == 1 && cfg.targets[0] == "all-linear";
  const std::map<std::string, std::string> hf = hf_module_paths(model.config());
  std::vector<std::string> paths;
  std::vector<bool> used(cfg.targets.size(), false);
  for (const auto& [path, m] : model.named_modules()) {
    if (!std::dynamic_pointer_cast<Linear>(m) || !hf.count(path)) continue;  // the model's own linears
    const std::string& hf_path = hf.at(path);
    bool hit = false;
    for (size_t t = 0; t < cfg.targets.size(); ++t) {
      const std::string& target = cfg.targets[t];
      if (!all && !matches(hf_path, target) && !(hf_path.empty() && matches(path, target))) continue;
      LOOM_CHECK(!hf_path.empty(), "lora.targets: {} is part of a fused Hugging Face tensor (GPT-2's c_attn), which LoRA cannot "
                 "adapt on its own; target c_proj or c_fc, or another family", path);
      hit = used[t] = true;
    }
    if (hit) paths.push_back(path);
  }
  for (size_t t = 0; t < cfg.targets.size() && !all; ++t)
    LOOM_CHECK(used[t], "lora.targets: no linear module of the model is named {:?} (Hugging Face module names, e.g. q_proj)",
               cfg.targets[t]);
  LOOM_CHECK(!paths.empty(), "lora.targets: the model has no linear modules to adapt");
  for (size_t i = 0; i < paths.size(); ++i) {
    auto base = std::dynamic_pointer_cast<Linear>(model.module_at(paths[i]));
    // Each adapted module draws A from its own stream: (seed, module index) hashed.
    model.replace_module(paths[i], std::make_shared<LoraLinear>(base, cfg, seed * 1000003ull + i));
  }
  for (auto& [name, p] : model.named_parameters())
    if (!is_lora_tensor(name)) p.set_requires_grad(false);
  return paths;
}

std::map<std::string, Tensor> merged_state_dict(const Module& model) {
  std::map<std::string, Tensor> out;
  for (const auto& [name, p] : model.named_parameters())
    if (!is_lora_tensor(name)) out[name] = p;
  // Each linear (but LoRA's own A and B) as it computes: merged, dequantised, or its parameters as they are.
  for (const auto& [path, m] : model.named_modules()) {
    auto lin = std::dynamic_pointer_cast<Linear>(m);
    if (!lin || is_lora_tensor(path + ".weight")) continue;
    out[path + ".weight"] = lin->dense_weight();
    if (lin->bias.defined()) out[path + ".bias"] = lin->bias;
  }
  return out;
}

void set_lora_dropout(Module& model, std::optional<int64_t> first) {
  for (const auto& [path, m] : model.named_modules())
    if (auto lora = std::dynamic_pointer_cast<LoraLinear>(m)) {
      LOOM_CHECK(!first || *first >= 0 || lora->dropout == 0,
                 "lora.dropout: the batch has no position in the data stream (data::Batch::first), which {}'s dropout masks are drawn from",
                 path);
      lora->first_sequence = first;
    }
}

void freeze_all_but(Module& model, const std::vector<std::string>& patterns) {
  std::vector<bool> used(patterns.size(), false);
  for (auto& [name, p] : model.named_parameters()) {
    bool keep = false;
    for (size_t i = 0; i < patterns.size(); ++i)
      if (matches_pattern(name, patterns[i])) keep = used[i] = true;
    if (!keep) p.set_requires_grad(false);
  }
  for (size_t i = 0; i < patterns.size(); ++i)
    LOOM_CHECK(used[i], "training.trainable: no parameter matches {:?}", patterns[i]);
}

}  // namespace loom::nn
