// The parts of a Hugging Face tokenizer.json around its BPE model: the normalizer, the
// pre-tokenizer and the decoder, parsed and checked once and then applied as the Rust library
// applies them. Nested Sequences are flattened into one list of steps each.
#pragma once

#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "loom/tokenizer/pretokenize.h"
#include "loom/tokenizer/regex.h"

namespace loom::tokenizer {

class Pipeline {
 public:
  // GPT-2's: no normalizer, the ByteLevel pre-tokenizer with its regex, the ByteLevel decoder;
  // \s in that regex as the reference encoder (JavaScript) has it, not as in tokenizer.json
  // files (Unicode's White_Space); the two differ at U+0085 and U+FEFF.
  Pipeline();
  // From the "normalizer", "pre_tokenizer" and "decoder" values of a tokenizer.json (null:
  // none). A component Loom does not implement throws loom::Error naming `where` and it.
  static Pipeline parse(const nlohmann::json& normalizer, const nlohmann::json& pre_tokenizer,
                        const nlohmann::json& decoder, std::string_view where);

  // A ByteLevel pre-tokenizer: the model's tokens are strings of bytes, not of characters.
  bool byte_level() const { return byte_level_; }
  // Exactly GPT-2's pre-tokenization and no normalizer (the hand-written fast path), and then
  // which \s its regex has.
  bool gpt2() const { return gpt2_spaces().has_value(); }
  std::optional<Spaces> gpt2_spaces() const;
  // The decoder is ByteLevel alone: decoding is concatenating the tokens' bytes.
  bool byte_level_decoder_only() const;
  // The patterns of a pre-tokenizer made of regex Splits (Isolated, not inverted) and then
  // ByteLevel without its regex or a prefix space, under no normalizer or NFC alone: how
  // LLaMA-3's, Qwen2's and other byte-level tokenizers split text (llama.cpp knows them by these
  // patterns). nullopt for any other pipeline.
  std::optional<std::vector<std::string>> byte_level_splits() const;
  // SentencePiece's layout as tokenizer.json writes it (LLaMA-2, Mistral 7B): the normalizers
  // Prepend "▁" and Replace " " with "▁", and no pre-tokenizer.
  bool sentencepiece() const;
  bool has_normalizer() const { return !normalizers_.empty(); }

  // Normalizes valid UTF-8 text.
  std::string normalize(std::string_view text) const;
  // Appends the pre-tokens of valid UTF-8 `text` to `pieces`: views into `text` or into
  // strings added to `arena`. `first`: text starts the input (Metaspace's "first" scheme).
  void pre_tokenize(std::string_view text, bool first, std::vector<std::string_view>& pieces,
                    std::deque<std::string>& arena) const;
  // The decoder applied to token strings (as the vocabulary writes them); the concatenated
  // result. Bytes that are not UTF-8 come out as they are when the last step is ByteLevel.
  std::string decode(std::vector<std::string> tokens) const;

  enum class Behavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };
  // One step of each kind (members used by the kinds that name them).
  struct Normalizer {
    enum class Kind { nfc, nfd, nfkc, nfkd, lowercase, prepend, replace, strip } kind;
    std::optional<Regex> pattern = {};  // replace
    std::string text = {};              // prepend: the prefix; replace: the replacement
    bool left = false, right = false;  // strip
  };

  struct PreTokenizer {
    enum class Kind { byte_level, split, digits, metaspace, punctuation, whitespace_split } kind;
    std::optional<Regex> pattern = {};  // split (also Whitespace, as the regex it is)
    Behavior behavior = Behavior::isolated;
    bool invert = false;
    bool flag = false;  // byte_level: add_prefix_space; digits: individual; metaspace: split
    bool use_regex = false;  // byte_level
    bool js_spaces = false;  // byte_level: \s as the reference GPT-2 encoder (JavaScript) has it
    std::string replacement = {};  // metaspace
    enum class Prepend { always, first, never } prepend = Prepend::always;  // metaspace
  };

  struct Decoder {
    enum class Kind { byte_level, metaspace, replace, byte_fallback, fuse, strip } kind;
    std::optional<Regex> pattern = {};  // replace
    std::string text = {};  // replace: the replacement; metaspace: the replacement character
    char32_t strip_char = 0;
    size_t start = 0, stop = 0;  // strip
    bool prepend = true;         // metaspace: a prefix was prepended, so the first one goes
  };

 private:
  std::vector<Normalizer> normalizers_;
  std::vector<PreTokenizer> pre_tokenizers_;
  std::vector<Decoder> decoders_;
  bool byte_level_ = true;
};

// Valid UTF-8: each maximal invalid sequence becomes U+FFFD (Rust's from_utf8_lossy).
std::string valid_utf8(std::string_view bytes);

}  // namespace loom::tokenizer
