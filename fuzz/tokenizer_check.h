// The check both tokenizer targets run on a tokenizer they loaded: byte-level BPE encodes any
// bytes, and decoding gives them back.
#pragma once

#include <string_view>

#include "fuzz/harness.h"
#include "loom/tokenizer/bpe.h"

namespace loom::fuzz {

inline void check_round_trip(const tokenizer::Tokenizer& tok) {
  constexpr std::string_view text = "Hello, world! It's 2024:\n\tcafé\xff\xfe <|endoftext|> x  y\r\n";
  for (bool allow_special : {false, true})
    expect(must_accept([&] { return tok.decode(tok.encode(text, allow_special)); }) == text, "decode(encode(text)) is not text");
}

}  // namespace loom::fuzz
