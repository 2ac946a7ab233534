// BPE tokenizers in GGUF: byte-level ones as llama.cpp's "gpt2" tokenizer model, SentencePiece-style
// ones as its "llama" (SentencePiece) model.
#include "loom/io/gguf_vocab.h"

#include <cctype>
#include <map>
#include <optional>
#include <set>

#include "loom/core/error.h"
#include "loom/tokenizer/pipeline.h"

namespace loom::io {

namespace {

// gguf-py's TokenType.
enum TokenType : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

// llama.cpp's pre-tokenizer names for the Split regexes (as tokenizer.json writes them) it runs,
// and the ignore_merges each name switches on in llama.cpp.
struct PreName {
  const char* name;
  const char* pattern;
  bool ignore_merges;
};
constexpr PreName kPreNames[] = {
    {"llama-bpe", R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re",
     true},
    {"qwen2", R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re", false},
    {"tekken",
     R"re([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)re",
     true},
};

// convert_hf_to_gguf.py's does_token_look_special: added tokens it makes control tokens even
// when tokenizer.json does not mark them special.
bool looks_special(std::string_view t) {
  auto wrapped = [&](std::string_view open, std::string_view close) { return t.starts_with(open) && t.ends_with(close); };
  return t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]" || wrapped("<|", "|>") || wrapped("<｜", "｜>") ||
         wrapped("<unused", ">");
}

// <0xNN>: a byte_fallback token.
bool byte_token(std::string_view t) {
  return t.size() == 6 && t.starts_with("<0x") && t.ends_with(">") && std::isxdigit(uint8_t(t[3])) && std::isxdigit(uint8_t(t[4]));
}

// llama.cpp's SentencePiece model merges the adjacent pair whose joined token has the highest
// score; Hugging Face's BPE the pair of lowest merge rank. A token's score is minus the rank of the
// first merge that makes it, so both merge in the same order.
std::vector<float> merge_scores(const tokenizer::Tokenizer& tok, int64_t vocab_size) {
  std::vector<float> scores(size_t(vocab_size), 0.0f);
  std::map<std::string, int32_t, std::less<>> first_rank;
  const auto merges = tok.merges();
  for (size_t r = merges.size(); r-- > 0;) first_rank[std::string(tok.token(merges[r].first)) + std::string(tok.token(merges[r].second))] = int32_t(r);
  for (int32_t id = 0; id < int32_t(vocab_size); ++id)
    if (tok.has_id(id))
      if (auto it = first_rank.find(tok.token(id)); it != first_rank.end()) scores[size_t(id)] = -float(it->second);
  return scores;
}

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  for (size_t at; (at = s.find(from)) != std::string_view::npos; s.remove_prefix(at + from.size())) out.append(s.substr(0, at)).append(to);
  return out.append(s);
}

}  // namespace

std::string llama_cpp_pre_tokenizer(const tokenizer::Tokenizer& tok) {
  const tokenizer::Pipeline& p = tok.pipeline();
  const tokenizer::BpeOptions& o = tok.options();
  const bool plain = p.byte_level() && o.continuing_subword_prefix.empty() && o.end_of_word_suffix.empty();
  if (plain && p.gpt2() && !o.ignore_merges) return "gpt-2";
  const std::optional<std::vector<std::string>> splits = p.byte_level_splits();
  if (plain && splits && splits->size() == 1)
    for (const PreName& n : kPreNames)
      if ((*splits)[0] == n.pattern && o.ignore_merges == n.ignore_merges) return n.name;
  throw Error(
      "gguf: llama.cpp has no tokenizer that splits text as this one does (Loom exports SentencePiece-style BPE with byte fallback "
      "as LLaMA-2's, GPT-2's byte-level BPE, and LLaMA-3's, Qwen2's and Mistral-Nemo's regex Split before ByteLevel, each with its "
      "ignore_merges)");
}

gguf::Metadata gguf_tokenizer(const tokenizer::Tokenizer& tok, const tokenizer::TokenizerConfig& cfg, int64_t vocab_size) {
  const bool spm = tok.pipeline().sentencepiece() && tok.options().byte_fallback;
  const std::string pre = spm ? "default" : llama_cpp_pre_tokenizer(tok);
  LOOM_CHECK(tok.vocab_size() <= vocab_size, "gguf: the tokenizer has {} ids, more than the model's {} embedding rows", tok.vocab_size(),
             vocab_size);
  const std::set<int32_t> added(tok.specials().begin(), tok.specials().end());
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  for (int32_t id = 0; id < int32_t(vocab_size); ++id) {
    if (!tok.has_id(id)) {
      tokens.push_back(fmt::format("[PAD{}]", id));
      types.push_back(kUnused);
      continue;
    }
    const std::string t(tok.token(id));
    if (id == tok.options().unk) {
      tokens.push_back(t);
      types.push_back(kUnknown);
    } else if (added.count(id)) {
      const bool control = tok.is_special(id) || looks_special(t);
      tokens.push_back(control ? t : replace_all(t, "\u2581", " "));  // the converter's pre-normalised user-defined spaces
      types.push_back(control ? kControl : kUserDefined);
    } else if (spm) {
      tokens.push_back(t);
      types.push_back(byte_token(t) ? kByte : kNormal);
    } else {
      tokens.push_back(tokenizer::to_byte_level(t));
      types.push_back(kNormal);
    }
  }
  gguf::Metadata m = {{"tokenizer.ggml.model", gguf::str(spm ? "llama" : "gpt2")},
                      {"tokenizer.ggml.pre", gguf::str(pre)},
                      {"tokenizer.ggml.tokens", gguf::strings(std::move(tokens))}};
  if (spm) m.emplace_back("tokenizer.ggml.scores", gguf::f32s(merge_scores(tok, vocab_size)));
  m.emplace_back("tokenizer.ggml.token_type", gguf::i32s(types));
  if (!spm) {
    std::vector<std::string> merges;
    for (const auto& [left, right] : tok.merges())
      merges.push_back(tokenizer::to_byte_level(tok.token(left)) + " " + tokenizer::to_byte_level(tok.token(right)));
    m.emplace_back("tokenizer.ggml.merges", gguf::strings(std::move(merges)));
  }
  const std::optional<int32_t> endoftext = tok.token_id("<|endoftext|>");
  auto id_of = [&](const std::optional<std::string>& content) { return content ? tok.token_id(*content) : std::nullopt; };
  const std::optional<int32_t> bos = cfg.bos_token ? id_of(cfg.bos_token) : endoftext, eos = cfg.eos_token ? id_of(cfg.eos_token) : endoftext,
                               pad = id_of(cfg.pad_token);
  if (bos) m.emplace_back("tokenizer.ggml.bos_token_id", gguf::u32(uint32_t(*bos)));
  if (eos) m.emplace_back("tokenizer.ggml.eos_token_id", gguf::u32(uint32_t(*eos)));
  if (tok.options().unk) m.emplace_back("tokenizer.ggml.unknown_token_id", gguf::u32(uint32_t(*tok.options().unk)));
  if (pad) m.emplace_back("tokenizer.ggml.padding_token_id", gguf::u32(uint32_t(*pad)));
  m.emplace_back("tokenizer.ggml.add_bos_token", gguf::boolean(cfg.bos_token && cfg.add_bos_token.value_or(true)));
  if (spm) m.emplace_back("tokenizer.ggml.add_space_prefix", gguf::boolean(true));  // the Prepend normalizer
  if (!cfg.chat_template.empty()) m.emplace_back("tokenizer.chat_template", gguf::str(cfg.chat_template));
  return m;
}

}  // namespace loom::io
