// The check both tokenizer targets run on a tokenizer they loaded: it encodes any bytes and
// decodes what it encoded; GPT-2's byte-level pipeline gives the bytes back exactly (when its BPE
// adds no subword prefix or word suffix).
#pragma once

#include <string_view>

#include "fuzz/harness.h"
#include "loom/tokenizer/bpe.h"
#include "loom/tokenizer/pipeline.h"

namespace loom::fuzz {

inline void check_round_trip(const tokenizer::Tokenizer& tok) {
  constexpr std::string_view text = "Hello, world! It's 2024:\n\tcafé\xff\xfe <|endoftext|> x  y\r\n";
  for (bool allow_special : {false, true}) {
    const std::string back = must_accept([&] { return tok.decode(tok.encode(text, allow_special)); });
    // Exact only without a subword prefix or word suffix, which ByteLevel's decoder keeps (as Hugging Face's does).
    const tokenizer::BpeOptions& o = tok.options();
    if (tok.pipeline().gpt2() && o.continuing_subword_prefix.empty() && o.end_of_word_suffix.empty())
      expect(back == text, "decode(encode(text)) is not text");
  }
}

}  // namespace loom::fuzz
