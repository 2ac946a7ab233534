#include "loom/tokenizer/config.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "loom/core/error.h"
#include "loom/io/file_util.h"

namespace loom::tokenizer {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

fs::path dir_of(const fs::path& p) { return fs::is_directory(p) ? p : p.parent_path(); }

// A special token is written as its content or as {"content": ...}; null means none.
std::optional<std::string> token_field(const json& j, const char* key, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  const json& v = j[key];
  if (v.is_string()) return v.get<std::string>();
  LOOM_CHECK(v.is_object() && v.contains("content") && v["content"].is_string(),
             "tokenizer: {}: {} must be a string or {{\"content\": ...}}, got {}", where, key,
             v.dump());
  return v["content"].get<std::string>();
}

}  // namespace

TokenizerConfig load_tokenizer_config(const fs::path& tokenizer) {
  const fs::path file = dir_of(tokenizer) / "tokenizer_config.json";
  TokenizerConfig cfg;
  if (!fs::exists(file)) return cfg;
  const std::string where = file.string();
  const json j = io::parse_json(io::read_text_file(file), "tokenizer: " + where);
  LOOM_CHECK(j.is_object(), "tokenizer: {}: expected a JSON object", where);
  cfg.bos_token = token_field(j, "bos_token", where);
  cfg.eos_token = token_field(j, "eos_token", where);
  cfg.pad_token = token_field(j, "pad_token", where);
  if (j.contains("add_bos_token") && !j["add_bos_token"].is_null()) {
    LOOM_CHECK(j["add_bos_token"].is_boolean(), "tokenizer: {}: add_bos_token must be true or "
               "false, got {}", where, j["add_bos_token"].dump());
    cfg.add_bos_token = j["add_bos_token"].get<bool>();
  }
  if (j.contains("chat_template") && !j["chat_template"].is_null()) {
    const json& t = j["chat_template"];
    if (t.is_string()) {
      cfg.chat_template = t.get<std::string>();
    } else {
      LOOM_CHECK(t.is_array(), "tokenizer: {}: chat_template must be a string or a list of "
                 "{{\"name\", \"template\"}}, got {}", where, t.type_name());
      for (const json& e : t) {
        LOOM_CHECK(e.is_object() && e.contains("name") && e["name"].is_string() &&
                       e.contains("template") && e["template"].is_string(),
                   "tokenizer: {}: chat_template entries need \"name\" and \"template\" strings",
                   where);
        if (e["name"] == "default") cfg.chat_template = e["template"].get<std::string>();
      }
    }
  }
  return cfg;
}

int32_t document_separator(const Tokenizer& tok, const TokenizerConfig& cfg,
                           const std::string& override_token) {
  if (!override_token.empty()) {
    auto id = tok.token_id(override_token);
    LOOM_CHECK(id, "prepare: --separator {:?} is not a token of this tokenizer", override_token);
    return *id;
  }
  if (cfg.bos_token && cfg.add_bos_token.value_or(true)) {
    auto id = tok.token_id(*cfg.bos_token);
    LOOM_CHECK(id, "tokenizer: bos_token {:?} of tokenizer_config.json is not a token",
               *cfg.bos_token);
    return *id;
  }
  if (auto id = tok.special_id("<|endoftext|>")) return *id;
  if (cfg.eos_token) {
    if (auto id = tok.token_id(*cfg.eos_token)) return *id;
  }
  throw Error("prepare: the tokenizer adds no BOS, has no <|endoftext|> and names no EOS; give "
              "the token that separates documents with --separator");
}

std::vector<int32_t> stop_tokens(const Tokenizer& tok, const TokenizerConfig& cfg,
                                 const fs::path& model_dir) {
  std::vector<int32_t> out;
  if (cfg.eos_token) {
    if (auto id = tok.token_id(*cfg.eos_token)) out.push_back(*id);
  }
  const fs::path gen = dir_of(model_dir) / "generation_config.json";
  if (fs::exists(gen)) {
    const json j = io::parse_json(io::read_text_file(gen), "generate: " + gen.string());
    const json ids = j.is_object() && j.contains("eos_token_id") ? j["eos_token_id"] : json();
    for (const json& v : ids.is_array() ? ids : json::array({ids})) {
      if (v.is_null()) continue;
      LOOM_CHECK(v.is_number_integer() && tok.has_id(v.get<int32_t>()),
                 "generate: {}: eos_token_id {} is not a token id", gen.string(), v.dump());
      out.push_back(v.get<int32_t>());
    }
  }
  if (out.empty()) {
    if (auto id = tok.special_id("<|endoftext|>")) out.push_back(*id);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

void copy_tokenizer_files(const fs::path& from, const fs::path& to) {
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                        "generation_config.json"})
    if (fs::exists(from / f)) fs::copy_file(from / f, to / f, fs::copy_options::overwrite_existing);
}

}  // namespace loom::tokenizer
