#include "loom/io/peft.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "loom/autograd/function.h"
#include "loom/core/error.h"
#include "loom/io/file_util.h"
#include "loom/io/safetensors.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/shape.h"

namespace loom::io {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// PEFT's tensor name for a LoRA matrix ("A" or "B") of the Loom module at `path`.
std::string peft_name(const std::map<std::string, std::string>& hf, const std::string& path, const char* which) {
  return "base_model.model." + hf.at(path) + ".lora_" + which + ".weight";
}

}  // namespace

void save_adapter(const fs::path& dir, const models::ModelConfig& c, const std::map<std::string, Tensor>& lora, const nn::LoraConfig& cfg,
                  const std::string& base) {
  const std::map<std::string, std::string> hf = nn::hf_module_paths(c);
  TensorMap tensors;
  std::vector<std::string> targets;
  size_t used = 0;
  for (const auto& [path, m] : nn::TransformerLM(c, true).named_modules()) {  // in the model's order (deferred: no memory)
    const auto a = lora.find(path + ".lora_A.weight"), b = lora.find(path + ".lora_B.weight");
    if (a == lora.end() && b == lora.end()) continue;
    LOOM_CHECK(a != lora.end() && b != lora.end() && hf.count(path), "save_adapter: {} needs both lora_A and lora_B", path);
    tensors[peft_name(hf, path, "A")] = ops::contiguous(a->second.detach());
    tensors[peft_name(hf, path, "B")] = ops::contiguous(b->second.detach());
    used += 2;
    const std::string& h = hf.at(path);
    const std::string name = h.substr(h.rfind('.') + 1);
    if (std::find(targets.begin(), targets.end(), name) == targets.end()) targets.push_back(name);
  }
  LOOM_CHECK(used == lora.size(), "save_adapter: {} of the {} tensors are no LoRA matrices of the model's linears", lora.size() - used,
             lora.size());
  LOOM_CHECK(!tensors.empty(), "save_adapter: the model has no LoRA modules");
  fs::create_directories(dir);
  write_safetensors(dir / "adapter_model.safetensors", tensors);
  const json config = {{"peft_type", "LORA"},
                       {"task_type", "CAUSAL_LM"},
                       {"r", cfg.r},
                       {"lora_alpha", cfg.alpha},
                       {"lora_dropout", cfg.dropout},
                       {"target_modules", targets},
                       {"use_rslora", cfg.rslora},
                       {"bias", "none"},
                       {"fan_in_fan_out", c.family == "gpt2"},
                       {"base_model_name_or_path", base},
                       {"inference_mode", true}};
  AtomicFile f(dir / "adapter_config.json");
  f.write(config.dump(2) + "\n");
  f.commit();
}

void save_adapter(const fs::path& dir, const nn::TransformerLM& model, const nn::LoraConfig& cfg, const std::string& base) {
  std::map<std::string, Tensor> lora;
  for (const auto& [path, m] : model.named_modules())
    if (auto l = std::dynamic_pointer_cast<nn::LoraLinear>(m)) {
      lora[path + ".lora_A.weight"] = l->lora_A->weight;
      lora[path + ".lora_B.weight"] = l->lora_B->weight;
    }
  save_adapter(dir, model.config(), lora, cfg, base);
}

nn::LoraConfig read_adapter_config(const fs::path& dir) {
  const fs::path file = dir / "adapter_config.json";
  const std::string where = file.string();
  const json j = parse_json(read_text_file(file), "adapter: " + where);
  auto field = [&](const char* key) -> const json& {
    LOOM_CHECK(j.is_object() && j.contains(key), "adapter: {}: no \"{}\"", where, key);
    return j[key];
  };
  LOOM_CHECK(field("peft_type") == "LORA", "adapter: {}: peft_type {} is not LORA", where, field("peft_type").dump());
  LOOM_CHECK(j.value("bias", std::string("none")) == "none", "adapter: {}: bias {} is not supported (only \"none\")", where,
             j["bias"].dump());
  nn::LoraConfig cfg;
  LOOM_CHECK(field("r").is_number_integer() && field("r").get<int64_t>() > 0, "adapter: {}: r must be a positive integer", where);
  cfg.r = field("r").get<int64_t>();
  LOOM_CHECK(field("lora_alpha").is_number(), "adapter: {}: lora_alpha must be a number", where);
  cfg.alpha = field("lora_alpha").get<double>();
  cfg.rslora = j.value("use_rslora", false);
  const json p = j.value("lora_dropout", json(0.0));
  LOOM_CHECK(p.is_number() && p.get<double>() >= 0 && p.get<double>() < 1, "adapter: {}: lora_dropout must be a number in [0, 1), got {}",
             where, p.dump());
  cfg.dropout = p.get<double>();
  const json& t = field("target_modules");
  if (t.is_string()) {
    cfg.targets = {t.get<std::string>()};
  } else {
    LOOM_CHECK(t.is_array() && !t.empty(), "adapter: {}: target_modules must be a string or a non-empty list", where);
    cfg.targets = t.get<std::vector<std::string>>();
  }
  return cfg;
}

void load_adapter(const fs::path& dir, nn::TransformerLM& model, uint64_t seed) {
  const nn::LoraConfig cfg = read_adapter_config(dir);
  const std::vector<std::string> paths = nn::apply_lora(model, cfg, seed);
  const fs::path file = dir / "adapter_model.safetensors";
  TensorMap tensors = read_safetensors(file);
  const std::map<std::string, std::string> hf = nn::hf_module_paths(model.config());
  autograd::NoGradGuard no_grad;
  for (const std::string& path : paths) {
    auto lora = std::dynamic_pointer_cast<nn::LoraLinear>(model.module_at(path));
    for (auto [which, slot] : {std::pair{"A", &lora->lora_A->weight}, std::pair{"B", &lora->lora_B->weight}}) {
      const std::string name = peft_name(hf, path, which);
      auto it = tensors.find(name);
      LOOM_CHECK(it != tensors.end(), "adapter: {}: no tensor {}", file.string(), name);
      LOOM_CHECK(it->second.shape() == slot->shape(), "adapter: {}: {} has shape {}, the model needs {}", file.string(), name,
                 it->second.shape(), slot->shape());
      ops::copy_(*slot, it->second);
      tensors.erase(it);
    }
  }
  LOOM_CHECK(tensors.empty(), "adapter: {}: tensor {} adapts no module of the model", file.string(), tensors.begin()->first);
}

}  // namespace loom::io
