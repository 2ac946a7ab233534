// Hugging Face's AddedVocabulary matching: added tokens found in the text leftmost first, the
// longest at each place, then single_word, lstrip and rstrip applied as the Rust library does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "loom/tokenizer/bpe.h"

namespace loom::tokenizer {

class AddedMatcher {
 public:
  // Matches `pattern` (the token's content, or its normalized content) as token `t`.
  void add(std::string_view pattern, const AddedToken& t);
  bool empty() const { return tokens_.empty(); }

  struct Segment {
    size_t begin, end;  // byte offsets in the text
    int32_t id;         // the added token, or -1 for text between tokens
  };
  // The text cut into text segments and added tokens, in order, covering it all.
  std::vector<Segment> split(std::string_view text) const;

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> next;  // (byte, node)
    int32_t token = -1;                             // index into tokens_ of a pattern ending here
  };
  std::vector<Node> nodes_{Node{}};
  std::vector<AddedToken> tokens_;
};

}  // namespace loom::tokenizer
