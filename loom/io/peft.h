// PEFT LoRA adapters: adapter_model.safetensors (base_model.model.<HF module path>.lora_A.weight
// (r, in) and .lora_B.weight (out, r)) and adapter_config.json, written from and read into a
// TransformerLM that nn::apply_lora adapted.
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include "loom/nn/lora.h"

namespace loom::io {

// Writes `dir`/adapter_model.safetensors and adapter_config.json (each atomically) for the
// adapter tensors `lora` of a TransformerLM(c), whole and by Loom's names (`<path>.lora_A.weight`
// (r, in), `<path>.lora_B.weight` (out, r); a model that holds only part of them — ZeRO-3, tensor
// or pipeline parallelism — reads them back from a training checkpoint). base: the base model's
// name or path for the config.
void save_adapter(const std::filesystem::path& dir, const models::ModelConfig& c, const std::map<std::string, Tensor>& lora,
                  const nn::LoraConfig& cfg, const std::string& base);
// The same for the LoraLinear modules of `model`, whole in this process.
void save_adapter(const std::filesystem::path& dir, const nn::TransformerLM& model, const nn::LoraConfig& cfg, const std::string& base);
// The LoRA settings of `dir`/adapter_config.json; an error naming the file and field for what Loom
// cannot run (another peft_type, biases).
nn::LoraConfig read_adapter_config(const std::filesystem::path& dir);
// Adapts `model` as `dir` says (apply_lora with its target_modules and `seed`, which only the
// dropout of further training draws from) and loads the adapter's tensors; a missing, extra or
// mis-shaped tensor is an error naming it.
void load_adapter(const std::filesystem::path& dir, nn::TransformerLM& model, uint64_t seed = 0);

}  // namespace loom::io
