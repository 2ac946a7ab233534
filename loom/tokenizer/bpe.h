// Byte-level BPE tokenizer (GPT-2 style): pre-tokenize, apply merges lowest rank first within
// each pre-token, map to ids; special tokens such as <|endoftext|> are matched in the text on
// request. Reads and writes HF tokenizer.json and reads GPT-2's vocab.json + merges.txt.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace loom::tokenizer {

// GPT-2's reversible map between bytes and printable code points, the alphabet of the token
// strings in vocabulary and merges files: to_byte_level("\n hi") == "ĊĠhi" (as UTF-8).
std::string to_byte_level(std::string_view bytes);
// The inverse; nullopt when `text` holds a code point outside the 256 images of bytes.
std::optional<std::string> from_byte_level(std::string_view text);

// An immutable vocabulary + merge table. Copies share the same model and are cheap;
// encode() and decode() are safe to call from many threads at once.
class Tokenizer {
 public:
  using Merge = std::pair<int32_t, int32_t>;  // (left id, right id)

  // tokens[id] = the token's bytes ("" marks an unused id); all 256 single bytes must be
  // tokens. merges come in rank order and each one's concatenation must be a token (when a
  // pair repeats, its last rank counts, as in the reference encoder). specials are ids whose
  // bytes encode() matches verbatim in the text when allowed.
  Tokenizer(std::vector<std::string> tokens, std::vector<Merge> merges,
            std::vector<int32_t> specials);

  // A tokenizer.json file, or a directory holding tokenizer.json, vocab.json + merges.txt or
  // encoder.json + vocab.bpe (tried in that order).
  static Tokenizer load(const std::filesystem::path& path);
  // HF tokenizer.json: model.vocab, model.merges ("a b" or ["a", "b"]); added_tokens become
  // special tokens.
  static Tokenizer load_hf_json(const std::filesystem::path& file);
  // GPT-2's vocab.json + merges.txt or OpenAI's encoder.json + vocab.bpe (same formats; a
  // leading #version line is skipped). <|endoftext|> is special when the vocabulary holds it.
  static Tokenizer load_vocab_merges(const std::filesystem::path& vocab_json,
                                     const std::filesystem::path& merges_txt);
  // Writes HF tokenizer.json (via a temporary file, so a failed write leaves `file` intact).
  void save(const std::filesystem::path& file) const;

  // Token ids of `text` (any bytes; invalid UTF-8 still round-trips). With allow_special,
  // occurrences of special tokens become their ids; otherwise they are ordinary text.
  std::vector<int32_t> encode(std::string_view text, bool allow_special = false) const;
  // The bytes the ids stand for; throws on an id outside the vocabulary.
  std::string decode(std::span<const int32_t> ids) const;

  int32_t vocab_size() const;  // 1 + the largest id
  bool has_id(int32_t id) const;  // false for ids outside the vocabulary and unused ones
  std::string_view token(int32_t id) const;  // bytes; throws on an unused id
  std::optional<int32_t> token_id(std::string_view bytes) const;
  std::optional<int32_t> special_id(std::string_view content) const;
  std::span<const int32_t> specials() const;
  std::span<const Merge> merges() const;

 private:
  struct Model;
  std::shared_ptr<const Model> m_;

  void encode_ordinary(std::string_view text, std::vector<int32_t>& out) const;
};

}  // namespace loom::tokenizer
