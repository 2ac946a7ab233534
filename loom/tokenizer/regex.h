// The regular expressions of tokenizer.json (Split pre-tokenizers, Replace normalizers and
// decoders), run by PCRE2 with UTF, Unicode properties and JIT compilation.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace loom::tokenizer {

class Regex {
 public:
  // Throws loom::Error naming `where` when PCRE2 rejects the pattern.
  Regex(std::string_view pattern, std::string_view where);
  // A pattern that matches `literal` exactly (a tokenizer.json {"String": ...} pattern).
  static Regex literal(std::string_view literal, std::string_view where);

  struct Match {
    size_t begin, end;  // byte offsets
  };
  // The non-empty matches in `text` (valid UTF-8), left to right, each search starting where
  // the last match ended; an empty match is stepped over by one character.
  std::vector<Match> find_all(std::string_view text) const;
  // The pattern as given (a literal's: quoted).
  const std::string& source() const { return source_; }

 private:
  struct Code;
  std::shared_ptr<const Code> code_;
  std::string where_, source_;
};

}  // namespace loom::tokenizer
