// PEFT LoRA adapters: adapter_model.safetensors (base_model.model.<HF module path>.lora_A.weight
// (r, in) and .lora_B.weight (out, r)) and adapter_config.json, written from and read into a
// TransformerLM that nn::apply_lora adapted.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

#include "loom/nn/lora.h"

namespace loom::io {

// Writes `dir`/adapter_model.safetensors and adapter_config.json (each atomically) for the
// LoraLinear modules of `model`. base: the base model's name or path for the config. whole(name)
// gives the whole tensor of the adapter parameter `name` (Loom's name) where the model holds only
// part of it (ZeRO-3, tensor parallelism: read back from a training checkpoint); null: the
// model's own tensors.
using WholeTensorFn = std::function<Tensor(const std::string& name)>;
void save_adapter(const std::filesystem::path& dir, const nn::TransformerLM& model, const nn::LoraConfig& cfg,
                  const std::string& base, const WholeTensorFn& whole = nullptr);
// The LoRA settings of `dir`/adapter_config.json; an error naming the file and field for what Loom
// cannot run (another peft_type, biases).
nn::LoraConfig read_adapter_config(const std::filesystem::path& dir);
// Adapts `model` as `dir` says (apply_lora with its target_modules and `seed`, which only the
// dropout of further training draws from) and loads the adapter's tensors; a missing, extra or
// mis-shaped tensor is an error naming it.
void load_adapter(const std::filesystem::path& dir, nn::TransformerLM& model, uint64_t seed = 0);

}  // namespace loom::io
