// The check both tokenizer targets run on a tokenizer they loaded: it encodes any bytes and
// decodes what it encoded; GPT-2's byte-level pipeline gives the bytes back exactly.
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
    if (tok.pipeline().gpt2()) expect(back == text, "decode(encode(text)) is not text");
  }
}

}  // namespace loom::fuzz
