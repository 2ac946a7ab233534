// A Loom model (GPT-2, LLaMA, Mistral, Qwen2, Qwen3) and a LoRA adapter as llama.cpp's GGUF:
// the architecture names, metadata keys, tensor names, layouts and per-tensor types that
// llama.cpp's convert_hf_to_gguf.py and convert_lora_to_gguf.py write for the same model's
// Hugging Face directory. docs/deployment.md has the tables.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "loom/io/gguf.h"
#include "loom/io/hf_checkpoint.h"
#include "loom/models/config.h"
#include "loom/nn/lora.h"

namespace loom::io {

// What a GGUF file holds besides the tokenizer: metadata and tensors.
struct GgufContent {
  gguf::Metadata metadata;
  std::vector<gguf::OutTensor> tensors;
};

// llama.cpp's architecture of a Loom family: gpt2, llama (LLaMA and Mistral), qwen2, qwen3.
std::string gguf_architecture(const models::ModelConfig& c);

// The GGUF name of a Hugging Face tensor of family c ("model.layers.3.self_attn.q_proj.weight"
// -> "blk.3.attn_q.weight", GPT-2's "transformer.h.0.attn.c_attn.bias" -> "blk.0.attn_qkv.bias"),
// as gguf-py's tensor map gives it; throws naming one it does not know.
std::string gguf_tensor_name(const models::ModelConfig& c, const std::string& hf_name);


// general.* and <arch>.* metadata and every tensor of the model whose Loom state dict is `state`,
// as convert_hf_to_gguf.py --outtype `type` writes its Hugging Face directory: 1-D tensors,
// norms, biases and GPT-2's position_embd stay f32; q8_0 falls back to f16 for rows that are not
// whole blocks of 32; a tied head has no output tensor. `name` is general.name.
GgufContent gguf_model(const models::ModelConfig& c, const std::map<std::string, Tensor>& state, gguf::TensorType type,
                       const std::string& name);

// The LoRA modules of `adapted` (nn::apply_lora / io::load_adapter) as convert_lora_to_gguf.py
// writes a PEFT adapter: general.type "adapter", adapter.type "lora", adapter.lora.alpha, and for
// each adapted weight W "<W's GGUF name>.lora_a" = A (r, in) and ".lora_b" = B (out, r), B's rows
// permuted where W's are. llama.cpp adds (alpha / r)·B·A to W, so alpha is PEFT's scale times r:
// α, or α·√r under rsLoRA.
GgufContent gguf_lora(const models::ModelConfig& c, const nn::TransformerLM& adapted, const nn::LoraConfig& cfg, gguf::TensorType type,
                      const std::string& name);

// A GGUF model of one of these architectures (written by loom export or by llama.cpp's converter)
// as Loom weights: the config from the <arch>.* keys (Mistral reads back as LLaMA, which computes
// the same), the vocabulary from token_embd's rows, a tied head when there is no output tensor;
// the tensors dequantised to f32 and laid out back as Hugging Face has them. Another architecture
// or general.type, settings Loom cannot run (partial rotary dims), a missing, extra or mis-shaped
// tensor are errors naming the file and the key or tensor.
ModelWeights read_gguf_model(const std::filesystem::path& file);

}  // namespace loom::io
