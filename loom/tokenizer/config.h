// tokenizer_config.json, the transformers file beside tokenizer.json: the special tokens by
// name, whether a BOS is added, and the chat template.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "loom/tokenizer/bpe.h"

namespace loom::tokenizer {

struct TokenizerConfig {
  std::optional<std::string> bos_token, eos_token, pad_token;  // contents
  std::optional<bool> add_bos_token;  // absent: transformers decides by tokenizer class
  std::string chat_template;          // "" when the file has none (a list: the "default" one)
};

// The tokenizer_config.json next to `tokenizer` (a directory, or a file in one); an empty
// config when there is none. A field of the wrong type is an error naming the file.
TokenizerConfig load_tokenizer_config(const std::filesystem::path& tokenizer);

// The token `prepare` puts before each document: `override` when given (it must be a token),
// else the BOS when the tokenizer adds one (a bos_token, add_bos_token not false), else
// <|endoftext|> when the vocabulary has it (GPT-2, Qwen), else the EOS; throws when none is.
int32_t document_separator(const Tokenizer& tok, const TokenizerConfig& cfg,
                           const std::string& override_token = "");

// The ids that end generation: the config's EOS and, from the model directory's
// generation_config.json, eos_token_id (a number or a list); <|endoftext|> when neither names
// one and the vocabulary has it.
std::vector<int32_t> stop_tokens(const Tokenizer& tok, const TokenizerConfig& cfg,
                                 const std::filesystem::path& model_dir);

// Copies the tokenizer files of directory `from` that exist (tokenizer.json, tokenizer_config.json,
// special_tokens_map.json, vocab.json, merges.txt, generation_config.json) into `to`, so that a
// model written there carries its tokenizer.
void copy_tokenizer_files(const std::filesystem::path& from, const std::filesystem::path& to);

}  // namespace loom::tokenizer
