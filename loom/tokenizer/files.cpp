// Tokenizer files: HF tokenizer.json (read and write), GPT-2 vocab.json + merges.txt and
// OpenAI encoder.json + vocab.bpe (read), and GPT-2's byte ↔ code point map that their token
// strings are written in. Every error names the file and the offending entry.
#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "loom/core/error.h"
#include "loom/io/file_util.h"
#include "loom/tokenizer/bpe.h"
#include "loom/tokenizer/pipeline.h"

namespace loom::tokenizer {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Bytes 33–126, 161–172 and 174–255 stand for themselves; the other 68 take 256, 257, ...
constexpr std::array<char32_t, 256> make_byte_map() {
  std::array<char32_t, 256> m{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    m[b] = printable ? char32_t(b) : next++;
  }
  return m;
}
constexpr std::array<char32_t, 256> kByteToCode = make_byte_map();
constexpr char32_t kCodeLimit = 256 + 68;

constexpr std::array<int16_t, kCodeLimit> make_code_map() {
  std::array<int16_t, kCodeLimit> m{};
  for (auto& v : m) v = -1;
  for (int b = 0; b < 256; ++b) m[kByteToCode[b]] = int16_t(b);
  return m;
}
constexpr std::array<int16_t, kCodeLimit> kCodeToByte = make_code_map();

// Strict: nesting is capped, so no message that quotes a value can recurse off the stack.
json read_json(const fs::path& file) {
  return io::parse_json(io::read_text_file(file), "tokenizer: " + file.string());
}

// A vocabulary as read from a file: token bytes by id, and ids by the file's token strings
// (the form merges refer to).
struct FileVocab {
  std::vector<std::string> tokens;
  std::unordered_map<std::string, int32_t> ids;
};

void put_token(FileVocab& v, int32_t id, std::string bytes, std::string_view where) {
  LOOM_CHECK(v.tokens[id].empty() || v.tokens[id] == bytes,
             "tokenizer: {}: id {} is given to both {:?} and {:?}", where, id, v.tokens[id], bytes);
  v.tokens[id] = std::move(bytes);
}

// `vocab` maps token strings to ids; byte-level ones are kept as their bytes. Tokens are kept
// in a table by id, so the ids must be dense enough for the table to stay the size of the
// file: at least half of the ids up to the largest are given. A byte-level vocabulary may hold
// an added token's content outside the byte alphabet (DeepSeek-V3's); BPE cannot produce it,
// so only the added token stays.
FileVocab parse_vocab(const json& vocab, std::string_view where, bool byte_level,
                      const std::vector<AddedToken>& added = {}) {
  LOOM_CHECK(vocab.is_object(), "tokenizer: {}: expected an object of token → id, got {}",
             where, vocab.type_name());
  int64_t largest = -1;
  for (const auto& [str, val] : vocab.items()) {
    LOOM_CHECK(val.is_number_integer() && val.get<int64_t>() >= 0 &&
                   val.get<int64_t>() < INT32_MAX,
               "tokenizer: {}: token {:?} has id {}, expected an integer in [0, 2^31)", where,
               str, val.dump());
    largest = std::max(largest, val.get<int64_t>());
  }
  LOOM_CHECK(largest < int64_t(2 * vocab.size()), "tokenizer: {}: ids run up to {} but only {} "
             "tokens are given; at most half of the ids below the largest may be unused", where,
             largest, vocab.size());
  FileVocab v;
  v.tokens.resize(size_t(largest + 1));
  v.ids.reserve(vocab.size());
  for (const auto& [str, val] : vocab.items()) {
    const auto id = val.get<int32_t>();
    v.ids.emplace(str, id);
    if (!byte_level) {
      put_token(v, id, str, where);
      continue;
    }
    std::optional<std::string> bytes = from_byte_level(str);
    const std::string& text = str;  // a structured binding cannot be captured (C++20, clang 14)
    const bool is_added = std::ranges::any_of(added, [&](const AddedToken& t) {
      return t.id == id && t.content == text;
    });
    if (!bytes && is_added) continue;
    LOOM_CHECK(bytes, "tokenizer: {}: token {:?} (id {}) is not byte-level: it has a character "
               "outside GPT-2's byte alphabet", where, str, id);
    put_token(v, id, std::move(*bytes), where);
  }
  return v;
}

// The result of merging a and b, as the vocabulary writes it (b loses the subword prefix).
Tokenizer::Merge resolve_merge(const FileVocab& v, const std::string& a, const std::string& b,
                               std::string_view where, std::string_view prefix = {}) {
  auto l = v.ids.find(a), r = v.ids.find(b);
  LOOM_CHECK(l != v.ids.end(), "tokenizer: {}: {:?} is not in the vocabulary", where, a);
  LOOM_CHECK(r != v.ids.end(), "tokenizer: {}: {:?} is not in the vocabulary", where, b);
  const std::string joined =
      a + (!prefix.empty() && b.starts_with(prefix) ? b.substr(prefix.size()) : b);
  LOOM_CHECK(v.ids.contains(joined), "tokenizer: {}: merge result {:?} is not in the "
             "vocabulary", where, joined);
  return {l->second, r->second};
}

// Builds the tokenizer, naming `file` in any complaint the constructor makes.
Tokenizer make(FileVocab v, std::vector<Tokenizer::Merge> merges, std::vector<AddedToken> added,
               BpeOptions opt, std::shared_ptr<const Pipeline> pipe, const fs::path& file) {
  try {
    return Tokenizer(std::move(v.tokens), std::move(merges), std::move(added), std::move(opt),
                     std::move(pipe));
  } catch (const Error& e) {
    std::string_view msg = e.what();
    if (msg.starts_with("tokenizer: ")) msg.remove_prefix(11);
    throw Error(fmt::format("tokenizer: {}: {}", file.string(), msg));
  }
}

std::vector<AddedToken> parse_added(const json& j, const std::string& where) {
  std::vector<AddedToken> out;
  if (!j.contains("added_tokens") || j["added_tokens"].is_null()) return out;
  const json& added = j["added_tokens"];
  LOOM_CHECK(added.is_array(), "tokenizer: {}: added_tokens is not an array", where);
  for (size_t i = 0; i < added.size(); ++i) {
    const json& t = added[i];
    const bool ok = t.is_object() && t.contains("id") && t["id"].is_number_integer() &&
                    t["id"].get<int64_t>() >= 0 && t["id"].get<int64_t>() < INT32_MAX &&
                    t.contains("content") && t["content"].is_string() &&
                    !t["content"].get<std::string>().empty();
    LOOM_CHECK(ok, "tokenizer: {}: added_tokens[{}] needs an integer \"id\" and a non-empty "
               "\"content\", got {}", where, i, t.dump());
    out.push_back({.id = t["id"].get<int32_t>(),
                   .content = t["content"].get<std::string>(),
                   .special = t.value("special", false),
                   .lstrip = t.value("lstrip", false),
                   .rstrip = t.value("rstrip", false),
                   .single_word = t.value("single_word", false),
                   .normalized = t.value("normalized", false)});
  }
  return out;
}

std::string optional_string(const json& model, const char* key) {
  return model.contains(key) && model[key].is_string() ? model[key].get<std::string>() : "";
}

Tokenizer from_hf_json(const json& j, const fs::path& file) {
  const std::string where = file.string();
  LOOM_CHECK(j.is_object() && j.contains("model") && j["model"].is_object(),
             "tokenizer: {}: no \"model\" object, so not a tokenizer.json", where);
  for (const char* key : {"truncation", "padding"})
    LOOM_CHECK(!j.contains(key) || j[key].is_null(), "tokenizer: {}: {} {} is not supported "
               "(it changes what encode returns)", where, key, j[key].dump());
  auto null_or = [&](const char* key) { return j.contains(key) ? j[key] : json(); };
  auto pipe = std::make_shared<const Pipeline>(Pipeline::parse(
      null_or("normalizer"), null_or("pre_tokenizer"), null_or("decoder"), where));
  const json& model = j["model"];
  LOOM_CHECK(model.value("type", "BPE") == "BPE", "tokenizer: {}: model.type is {}, only BPE "
             "is supported", where, model["type"].dump());
  LOOM_CHECK(model.contains("vocab") && model.contains("merges") && model["merges"].is_array(),
             "tokenizer: {}: model needs \"vocab\" (an object) and \"merges\" (an array)", where);
  const json dropout = model.value("dropout", json());
  LOOM_CHECK(dropout.is_null() || (dropout.is_number() && dropout.get<double>() == 0.0),
             "tokenizer: {}: model.dropout {} is not supported (BPE dropout is random)", where,
             dropout.dump());

  std::vector<AddedToken> added = parse_added(j, where);
  FileVocab v = parse_vocab(model["vocab"], where + " model.vocab", pipe->byte_level(), added);
  BpeOptions opt{.byte_fallback = model.value("byte_fallback", false),
                 .fuse_unk = model.value("fuse_unk", false),
                 .ignore_merges = model.value("ignore_merges", false),
                 .unk = std::nullopt,
                 .continuing_subword_prefix = optional_string(model, "continuing_subword_prefix"),
                 .end_of_word_suffix = optional_string(model, "end_of_word_suffix")};
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    auto it = v.ids.find(model["unk_token"].get<std::string>());
    LOOM_CHECK(it != v.ids.end(), "tokenizer: {}: model.unk_token {} is not in the vocabulary",
               where, model["unk_token"].dump());
    opt.unk = it->second;
  }
  if (pipe->byte_level()) {  // the prefix and suffix are written in the byte alphabet too
    for (std::string* s : {&opt.continuing_subword_prefix, &opt.end_of_word_suffix}) {
      std::optional<std::string> bytes = from_byte_level(*s);
      LOOM_CHECK(bytes, "tokenizer: {}: model prefix/suffix {:?} is not byte-level", where, *s);
      *s = *bytes;
    }
  }

  const json& ms = model["merges"];
  std::vector<Tokenizer::Merge> merges;
  merges.reserve(ms.size());
  for (size_t i = 0; i < ms.size(); ++i) {
    const std::string at = fmt::format("{} model.merges[{}]", where, i);
    const json& m = ms[i];
    std::string a, b;
    if (m.is_string()) {
      const auto s = m.get<std::string>();
      const size_t sp = s.find(' ');
      LOOM_CHECK(sp != std::string::npos && sp > 0 && sp + 1 < s.size() &&
                     s.find(' ', sp + 1) == std::string::npos,
                 "tokenizer: {}: expected \"left right\", got {:?}", at, s);
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else {
      LOOM_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(),
                 "tokenizer: {}: expected \"left right\" or [left, right], got {}", at, m.dump());
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    }
    merges.push_back(resolve_merge(v, a, b, at, optional_string(model, "continuing_subword_prefix")));
  }
  return make(std::move(v), std::move(merges), std::move(added), std::move(opt), std::move(pipe),
              file);
}

}  // namespace

std::string to_byte_level(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) {
    const char32_t cp = kByteToCode[b];
    if (cp < 0x80) {
      out += char(cp);
    } else {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    }
  }
  return out;
}

std::optional<std::string> from_byte_level(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const auto b0 = uint8_t(text[i]);
    char32_t cp = b0;
    if (b0 >= 0x80) {
      if ((b0 & 0xE0) != 0xC0 || i + 1 >= text.size() || (uint8_t(text[i + 1]) & 0xC0) != 0x80)
        return std::nullopt;
      cp = (char32_t(b0 & 0x1F) << 6) | (uint8_t(text[++i]) & 0x3F);
    }
    if (cp >= kCodeLimit || kCodeToByte[cp] < 0) return std::nullopt;
    out += char(kCodeToByte[cp]);
  }
  return out;
}

Tokenizer Tokenizer::load(const fs::path& path) {
  LOOM_CHECK(fs::exists(path), "tokenizer: {} does not exist", path.string());
  if (!fs::is_directory(path)) return load_hf_json(path);
  if (fs::exists(path / "tokenizer.json")) return load_hf_json(path / "tokenizer.json");
  if (fs::exists(path / "vocab.json") && fs::exists(path / "merges.txt"))
    return load_vocab_merges(path / "vocab.json", path / "merges.txt");
  if (fs::exists(path / "encoder.json") && fs::exists(path / "vocab.bpe"))
    return load_vocab_merges(path / "encoder.json", path / "vocab.bpe");
  throw Error(fmt::format("tokenizer: directory {} holds none of tokenizer.json, vocab.json + "
                          "merges.txt, encoder.json + vocab.bpe", path.string()));
}

Tokenizer Tokenizer::load_hf_json(const fs::path& file) {
  const json j = read_json(file);
  try {
    return from_hf_json(j, file);
  } catch (const json::exception& e) {  // a field of the wrong JSON type
    throw Error(fmt::format("tokenizer: {}: {}", file.string(), e.what()));
  }
}

Tokenizer Tokenizer::load_vocab_merges(const fs::path& vocab_json, const fs::path& merges_txt) {
  FileVocab v = parse_vocab(read_json(vocab_json), vocab_json.string(), true);
  const std::string text = io::read_text_file(merges_txt);
  std::vector<Merge> merges;
  size_t line_no = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string_view line(text.data() + pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (line.empty() || (line_no == 1 && line.starts_with("#version"))) continue;
    std::vector<std::string> parts;
    for (size_t i = 0; i < line.size();) {
      const size_t j = std::min(line.find_first_of(" \t", i), line.size());
      if (j > i) parts.emplace_back(line.substr(i, j - i));
      i = j + 1;
    }
    const std::string at = fmt::format("{} line {}", merges_txt.string(), line_no);
    LOOM_CHECK(parts.size() == 2, "tokenizer: {}: expected two tokens, got {:?}", at, line);
    merges.push_back(resolve_merge(v, parts[0], parts[1], at));
  }
  std::vector<AddedToken> specials;
  if (auto it = v.ids.find("<|endoftext|>"); it != v.ids.end())
    specials.push_back({.id = it->second, .content = it->first});
  return make(std::move(v), std::move(merges), std::move(specials), {}, nullptr, vocab_json);
}

void Tokenizer::save(const fs::path& file) const {
  LOOM_CHECK(pipeline().gpt2(), "tokenizer: cannot write {}: only GPT-2 style tokenizers are "
             "written (copy the tokenizer.json this one was read from)", file.string());
  // Written by hand: nlohmann's ordered_json inserts in linear time, too slow for 50k tokens.
  auto quoted = [](std::string_view s) { return json(s).dump(); };  // throws on bad UTF-8
  const std::string byte_level = "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                                 "\"trim_offsets\": true, \"use_regex\": true}";
  std::vector<bool> special(size_t(vocab_size()), false);
  std::string text;
  try {
    text = "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n"
           "  \"added_tokens\": [";
    for (int32_t id : specials()) {
      special[id] = true;
      text += fmt::format("{}\n    {{\"id\": {}, \"content\": {}, \"single_word\": false, "
                          "\"lstrip\": false, \"rstrip\": false, \"normalized\": false, "
                          "\"special\": true}}", id == specials().front() ? "" : ",", id,
                          quoted(token(id)));
    }
    text += fmt::format("\n  ],\n  \"normalizer\": null,\n  \"pre_tokenizer\": {0},\n"
                        "  \"post_processor\": {0},\n  \"decoder\": {0},\n  \"model\": {{\n"
                        "    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
                        "    \"continuing_subword_prefix\": \"\",\n    \"end_of_word_suffix\": \"\",\n"
                        "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n"
                        "    \"vocab\": {{", byte_level);
    const char* sep = "\n";
    for (int32_t id = 0; id < vocab_size(); ++id) {
      if (!has_id(id)) continue;
      const std::string key = special[id] ? std::string(token(id)) : to_byte_level(token(id));
      text += fmt::format("{}      {}: {}", sep, quoted(key), id);
      sep = ",\n";
    }
    text += "\n    },\n    \"merges\": [";
    sep = "\n";
    for (const auto& [l, r] : merges()) {
      text += fmt::format("{}      {}", sep, quoted(to_byte_level(token(l)) + " " +
                                                   to_byte_level(token(r))));
      sep = ",\n";
    }
    text += "\n    ]\n  }\n}\n";
  } catch (const json::exception& e) {
    throw Error(fmt::format("tokenizer: cannot write {}: {}", file.string(), e.what()));
  }
  const fs::path tmp = file.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    LOOM_CHECK(out.is_open(), "tokenizer: cannot create {}: {}", tmp.string(),
               std::strerror(errno));
    out << text;
    out.close();
    if (!out) {
      fs::remove(tmp);
      throw Error(fmt::format("tokenizer: writing {} failed", tmp.string()));
    }
  }
  std::error_code ec;
  fs::rename(tmp, file, ec);
  LOOM_CHECK(!ec, "tokenizer: cannot rename {} to {}: {}", tmp.string(), file.string(),
             ec.message());
}

}  // namespace loom::tokenizer
