// BPE tokenizers as Hugging Face's tokenizers library runs them: added tokens split out of the
// text, then normalizer → pre-tokenizer → BPE (merges lowest rank first within each pre-token)
// on the rest; decoding through the file's decoder. GPT-2's byte-level pipeline has a
// hand-written fast path. Reads HF tokenizer.json (and writes it for GPT-2 style ones) and
// GPT-2's vocab.json + merges.txt.
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

class Pipeline;

// A token that Hugging Face's AddedVocabulary matches in the text before any other step,
// with its flags: lstrip/rstrip take the whitespace on that side along, single_word matches
// only between non-word characters, normalized matches in the normalized text.
struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = true, lstrip = false, rstrip = false, single_word = false, normalized = false;
};

// The options of tokenizer.json's BPE model. A character without a token becomes the tokens
// <0xNN> of its bytes with byte_fallback, else unk (consecutive ones fused into one with
// fuse_unk), else nothing; with ignore_merges a pre-token that is itself a token is that token.
struct BpeOptions {
  bool byte_fallback = false, fuse_unk = false, ignore_merges = false;
  std::optional<int32_t> unk;
  std::string continuing_subword_prefix, end_of_word_suffix;
};

// An immutable tokenizer: the BPE vocabulary and merge table, its added tokens and the
// pipeline around it. Copies share the same model and are cheap; encode() and decode() are
// safe to call from many threads at once.
class Tokenizer {
 public:
  using Merge = std::pair<int32_t, int32_t>;  // (left id, right id)

  // tokens[id] = the token ("" marks an id the BPE model does not have): bytes when the
  // pipeline is byte-level, where all 256 single bytes must be tokens, else UTF-8 text.
  // merges come in rank order and each one's concatenation must be a token (when a pair
  // repeats, its last rank counts, as in the reference encoder). A null pipeline is
  // GPT-2's.
  Tokenizer(std::vector<std::string> tokens, std::vector<Merge> merges,
            std::vector<AddedToken> added, BpeOptions options,
            std::shared_ptr<const Pipeline> pipeline);
  // GPT-2 style (GPT-2's pipeline): specials are ids whose tokens are special added tokens.
  Tokenizer(std::vector<std::string> tokens, std::vector<Merge> merges,
            std::vector<int32_t> specials);

  // A tokenizer.json file, or a directory holding tokenizer.json, vocab.json + merges.txt or
  // encoder.json + vocab.bpe (tried in that order).
  static Tokenizer load(const std::filesystem::path& path);
  // HF tokenizer.json: its normalizer, pre-tokenizer, BPE model (merges as "a b" or
  // ["a", "b"]), added tokens and decoder; anything else is an error naming the component.
  static Tokenizer load_hf_json(const std::filesystem::path& file);
  // GPT-2's vocab.json + merges.txt or OpenAI's encoder.json + vocab.bpe (same formats; a
  // leading #version line is skipped). <|endoftext|> is special when the vocabulary holds it.
  static Tokenizer load_vocab_merges(const std::filesystem::path& vocab_json,
                                     const std::filesystem::path& merges_txt);
  // Writes HF tokenizer.json (via a temporary file, so a failed write leaves `file` intact);
  // only for GPT-2's pipeline.
  void save(const std::filesystem::path& file) const;

  // Token ids of `text`, without adding special tokens. With allow_special, added tokens
  // written in the text become their ids (as Hugging Face encodes); otherwise they are
  // ordinary text. GPT-2's pipeline takes any bytes (invalid UTF-8 still round-trips); the
  // others first replace each invalid UTF-8 sequence with U+FFFD.
  std::vector<int32_t> encode(std::string_view text, bool allow_special = false) const;
  // The text the ids stand for, through the decoder (added tokens kept); throws on an id
  // outside the vocabulary. Byte-level decoders give bytes that may not be UTF-8 alone.
  std::string decode(std::span<const int32_t> ids) const;

  int32_t vocab_size() const;  // 1 + the largest id
  bool has_id(int32_t id) const;  // false for ids outside the vocabulary and unused ones
  std::string_view token(int32_t id) const;  // an added token's content, else as in tokens
  std::optional<int32_t> token_id(std::string_view token) const;  // BPE tokens, then added
  std::optional<int32_t> special_id(std::string_view content) const;  // added tokens
  std::span<const int32_t> specials() const;  // the added tokens' ids
  bool is_special(int32_t id) const;  // an added token marked special (not text: skip_special_tokens drops it)
  const Pipeline& pipeline() const;
  std::span<const Merge> merges() const;
  const BpeOptions& options() const;

 private:
  struct Model;
  std::shared_ptr<const Model> m_;

  void encode_segment(std::string_view text, bool first, bool allow_special,
                      std::vector<int32_t>& out) const;
  void encode_normalized(std::string_view text, bool first, std::vector<int32_t>& out) const;
};

}  // namespace loom::tokenizer
