// Byte-level BPE training: learns a GPT-2 style vocabulary from a corpus by repeatedly merging
// the most frequent adjacent pair of tokens, counted over the corpus's pre-tokens.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "loom/tokenizer/bpe.h"

namespace loom::tokenizer {

// Ids 0–255 are the bytes, then one token per merge in the order learned, then
// special_tokens (which are cut out of the corpus before counting). Learning stops at
// vocab_size tokens or when no adjacent pair is left; equal counts go to the pair of smaller
// (left, right) ids, so the result depends only on the corpus.
Tokenizer train(std::span<const std::string> texts, int32_t vocab_size,
                std::span<const std::string> special_tokens = {});

}  // namespace loom::tokenizer
