// Autoregressive generation with a KV cache: greedy, temperature, top-k and top-p (nucleus)
// sampling, reproducible from a seed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "loom/nn/transformer.h"
#include "loom/tokenizer/bpe.h"

namespace loom::train {

struct GenerateOptions {
  int64_t max_new_tokens = 64;
  double temperature = 1.0;  // 0 = greedy
  int64_t top_k = 0;         // 0 = off
  double top_p = 1.0;        // 1 = off
  uint64_t seed = 0;
  std::vector<int64_t> stop_tokens;  // generation ends after emitting one (EOS, end of turn)
};

// Picks the next token from one row of logits (only the first vocab_size entries count).
int64_t sample_token(const std::vector<double>& logits, int64_t vocab_size, const GenerateOptions& opt, uint64_t draw);
// Returns only the new tokens. The prompt must be non-empty.
std::vector<int64_t> generate(const nn::TransformerLM& model, const std::vector<int64_t>& prompt, const GenerateOptions& opt);
// generate(), the new tokens decoded; a stop token that ends them is not text and is dropped.
std::string generate_text(const nn::TransformerLM& model, const tokenizer::Tokenizer& tok, const std::vector<int64_t>& prompt,
                          const GenerateOptions& opt);

}  // namespace loom::train
