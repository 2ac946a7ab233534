// Supervised fine-tuning data (`loom sft`): JSON Lines examples — chat `messages` rendered with
// the tokenizer's chat template, `prompt` + `completion`, or plain `text` — tokenized with a
// flag per token saying whether it is trained, then packed or padded into sequences of T.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "loom/data/loader.h"
#include "loom/tokenizer/bpe.h"
#include "loom/tokenizer/config.h"

namespace loom::data {

// The tokenizer as SFT uses it.
struct SftTokenizer {
  tokenizer::Tokenizer tok;
  tokenizer::TokenizerConfig config;
  std::vector<int32_t> stop = {};     // the tokens that end a turn (tokenizer::stop_tokens); trained after an assistant turn
  std::optional<int32_t> bos = {};    // put before prompt/completion and text examples (the tokenizer adds one)
  int32_t eos = 0;               // put after a completion or text (the config's eos_token, else the first stop token)
  int32_t pad = 0;               // fills rows (pad_token, else eos); never a target
};
// tokenizer: a tokenizer file or directory; model_dir: where generation_config.json may name more
// end-of-turn tokens.
SftTokenizer load_sft_tokenizer(const std::filesystem::path& tokenizer, const std::filesystem::path& model_dir);

// One example's tokens, and for each whether it is trained (a target of the token before it).
struct SftExample {
  std::vector<int32_t> ids;
  std::vector<uint8_t> trained;
};

// One JSON Lines object:
//   {"messages": [...]} (other keys are template variables, as `loom tokenizer render`): rendered
//     with the chat template (no BOS added: templates write it). train_on "assistant" trains the
//     content of every assistant message as the template renders it, and the template's text after
//     it up to and including the first end-of-turn token (stop); "last_assistant" only the last
//     assistant message's; "all" every token.
//   {"prompt", "completion"}: BOS (if the tokenizer adds one), prompt, completion, EOS; the
//     completion and the EOS are trained ("all": the prompt too).
//   {"text"}: BOS (if added), text, EOS, all trained.
// Each piece of text (the parts of the rendering between the trained and untrained spans) is
// tokenized on its own, special tokens written in it becoming their ids, as Hugging Face
// tokenizes a rendered conversation; the template's boundaries fall on special tokens.
SftExample encode_example(const nlohmann::ordered_json& line, const SftTokenizer& t, const std::string& train_on);

struct SftOptions {
  std::string train_on = "assistant";   // "assistant" | "last_assistant" | "all"
  bool packing = false;                 // several examples per sequence (else one, padded)
  std::string truncation = "truncate";  // an example over T+1 tokens: "truncate" (its first T+1) | "drop"
  int64_t seq_len = 0;                  // T
};

struct SftStats {
  int64_t examples = 0;    // lines read
  int64_t truncated = 0;   // cut to T+1 tokens
  int64_t too_long = 0;    // dropped by truncation = "drop"
  int64_t untrained = 0;   // dropped: no trained token (left) among its targets
  int64_t sequences = 0;   // rows of T
  int64_t trained_tokens = 0, tokens = 0;  // targets trained, and positions filled (not padding)
};

// The examples as sequences of T: each example of n tokens gives n−1 (input, target) pairs, a
// target −100 where its token is not trained. Without packing one example per sequence, padded
// (inputs pad, targets −100); with packing, examples in file order fill a sequence while they fit
// (positions restart at 0 for each, and the padding at a sequence's end is a document of its own),
// so attention stays within each example. Every id is checked against vocab_size; errors name
// `key`, the file and the line.
std::shared_ptr<const Sequences> sft_sequences(const std::filesystem::path& file, const std::string& key, const SftTokenizer& t,
                                               const SftOptions& options, int64_t vocab_size, SftStats* stats = nullptr);

}  // namespace loom::data
