// Reading what `loom eval` scores: token streams (JSON Lines documents or llm.c shards),
// multiple-choice questions and generation prompts, each bad line an error naming the file,
// the line and the field.
#include <filesystem>
#include <nlohmann/json.hpp>

#include "loom/chat/pystr.h"
#include "loom/chat/template.h"
#include "loom/data/prepare.h"
#include "loom/data/shards.h"
#include "loom/io/file_util.h"
#include "loom/train/eval.h"

namespace loom::train {

namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

std::string brief(const ojson& v) { return v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).substr(0, 80); }

const ojson& field(const ojson& j, const std::string& key) {
  LOOM_CHECK(j.is_object(), "expected a JSON object, got {}", brief(j));
  LOOM_CHECK(j.contains(key), "missing \"{}\"", key);
  return j[key];
}

std::string string_field(const ojson& j, const std::string& key) {
  const ojson& v = field(j, key);
  LOOM_CHECK(v.is_string(), "\"{}\" must be a string, got {}", key, brief(v));
  return v.get<std::string>();
}

// The shard files of --data: a directory's val_*.bin when it has some (the split `loom
// prepare` holds out), else what data::expand_paths finds.
std::vector<std::string> shard_files(const std::string& data) {
  std::string spec = data;
  if (fs::is_directory(data))
    for (const auto& e : fs::directory_iterator(data))
      if (e.is_regular_file() && e.path().filename().string().starts_with("val_") && e.path().extension() == ".bin")
        spec = (fs::path(data) / "val_*.bin").string();
  return data::expand_paths(spec, "eval: --data");
}

}  // namespace

std::vector<int32_t> read_token_stream(const std::string& data, const tokenizer::Tokenizer& tok, int32_t separator, int64_t vocab_size) {
  std::vector<int32_t> stream;
  auto check = [&](int32_t id, const std::string& where, size_t i) {
    LOOM_CHECK(tok.has_id(id) && id < vocab_size, "eval: {}: token {} is id {}, outside the vocabulary ({} ids in the tokenizer, {} in the model)",
               where, i, id, tok.vocab_size(), vocab_size);
  };
  if (fs::path(data).extension() == ".jsonl") {
    for (const std::vector<int32_t>& doc : data::encode_documents(tok, separator, data::read_documents(data, "eval"))) {
      for (int32_t id : doc) check(id, data, stream.size());
      stream.insert(stream.end(), doc.begin(), doc.end());
    }
  } else {
    for (const std::string& path : shard_files(data)) {
      const data::TokenShard shard(path);
      for (int64_t i = 0; i < shard.size(); ++i) {
        const auto id = int32_t(shard.at(i));
        check(id, path, size_t(i));
        stream.push_back(id);
      }
    }
  }
  LOOM_CHECK(stream.size() >= 2, "eval: {} holds {} tokens; perplexity needs at least 2", data, stream.size());
  return stream;
}

std::vector<Question> read_questions(const fs::path& file, const tokenizer::Tokenizer& tok, int32_t prefix, int64_t max_len) {
  std::vector<Question> out;
  io::for_each_json_line(file, "eval", [&](const ojson& j, int64_t) {
    const std::string context = string_field(j, "context");
    LOOM_CHECK(context.empty() || !chat::str_strip(context, std::nullopt, false, true).empty(),
               "\"context\" is only whitespace (\"\" scores the choices after the document separator)");
    const ojson& choices = field(j, "choices");
    LOOM_CHECK(choices.is_array() && choices.size() >= 2, "\"choices\" must be an array of at least two strings, got {}", brief(choices));
    const ojson& gold = field(j, "gold");
    LOOM_CHECK(gold.is_number_integer(), "\"gold\" must be an integer, got {}", brief(gold));
    LOOM_CHECK(gold.get<int64_t>() >= 0 && gold.get<int64_t>() < int64_t(choices.size()), "\"gold\" {} is out of range for {} choices",
               gold.get<int64_t>(), choices.size());
    Question q;
    q.gold = gold.get<int64_t>();
    for (size_t c = 0; c < choices.size(); ++c) {
      LOOM_CHECK(choices[c].is_string() && !choices[c].get<std::string>().empty(), "\"choices\"[{}] must be a non-empty string, got {}", c,
                 brief(choices[c]));
      const std::string choice = choices[c].get<std::string>();
      q.choices.push_back(encode_pair(tok, context, choice, prefix));
      const EncodedPair& p = q.choices.back();
      LOOM_CHECK(!p.context.empty(), "\"context\" encodes to no tokens");
      LOOM_CHECK(!p.continuation.empty() && int64_t(p.continuation.size()) <= max_len,
                 "\"choices\"[{}] is {} tokens after the context; it must be 1 to --seq-len {}", c, p.continuation.size(), max_len);
      q.lengths.push_back(chat::code_points(choice));
    }
    out.push_back(std::move(q));
  });
  LOOM_CHECK(!out.empty(), "eval: {} holds no questions", file.string());
  return out;
}

std::vector<GenPrompt> read_prompts(const fs::path& file, const tokenizer::Tokenizer& tok, const tokenizer::TokenizerConfig& cfg,
                                    int64_t max_new_tokens, int64_t max_seq_len) {
  std::vector<GenPrompt> out;
  io::for_each_json_line(file, "eval", [&](const ojson& j, int64_t) {
    GenPrompt p;
    p.answer = string_field(j, "answer");
    LOOM_CHECK(j.contains("prompt") != j.contains("messages"), "expected one of \"prompt\" and \"messages\"");
    std::string text;
    if (j.contains("prompt")) {
      text = string_field(j, "prompt");
    } else {
      const ojson& messages = j["messages"];
      LOOM_CHECK(messages.is_array(), "\"messages\" must be an array, got {}", brief(messages));
      LOOM_CHECK(!cfg.chat_template.empty(), "\"messages\" needs a chat_template in the tokenizer's tokenizer_config.json");
      ojson extra = j;
      extra.erase("messages");
      extra.erase("answer");
      text = chat::apply_chat_template(cfg.chat_template, messages, true, cfg.bos_token.value_or(""), cfg.eos_token.value_or(""), extra);
    }
    for (int32_t id : tok.encode(text, true)) p.ids.push_back(id);
    LOOM_CHECK(!p.ids.empty(), "the prompt is empty");
    LOOM_CHECK(int64_t(p.ids.size()) + max_new_tokens <= max_seq_len,
               "the prompt's {} tokens and --max-tokens {} exceed the model's max_seq_len {}", p.ids.size(), max_new_tokens, max_seq_len);
    out.push_back(std::move(p));
  });
  LOOM_CHECK(!out.empty(), "eval: {} holds no prompts", file.string());
  return out;
}

}  // namespace loom::train
