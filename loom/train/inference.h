// A model directory opened for inference (`loom generate`, `loom eval`): a Hugging Face
// directory's or a Loom checkpoint's weights in a TransformerLM, with its tokenizer, the
// tokenizer's tokenizer_config.json and the tokens that end generation.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "loom/nn/transformer.h"
#include "loom/tokenizer/bpe.h"
#include "loom/tokenizer/config.h"

namespace loom::train {

struct InferenceModel {
  std::unique_ptr<nn::TransformerLM> model;
  tokenizer::Tokenizer tok;
  tokenizer::TokenizerConfig tok_config;
  std::vector<int64_t> stop_tokens;  // tokenizer::stop_tokens: the EOS ids
};

// tokenizer: a tokenizer file or a directory holding one; empty = the model directory.
// adapter: a PEFT LoRA adapter directory applied to the model; empty = none.
// quant: "nf4" | "int8" quantises the model's linears before the adapter goes on (nn::quantize_base,
// the base a QLoRA adapter was trained on); empty = float.
InferenceModel load_for_inference(const std::filesystem::path& model_dir, const std::filesystem::path& tokenizer = {},
                                  const std::filesystem::path& adapter = {}, const std::string& quant = {});

}  // namespace loom::train
