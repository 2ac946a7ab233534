// `loom tokenizer train --input FILE|DIR --vocab-size N --output tokenizer.json`: learns a
// byte-level BPE vocabulary (with <|endoftext|> as a special token) from .txt/.jsonl files.
// `loom tokenizer encode|decode --tokenizer T --input IN.jsonl --output OUT.jsonl`: each line
// {"text": ...} <-> a JSON array of ids (no special tokens added; special strings written in the
// text become their ids, as Hugging Face's encode does).
// `loom tokenizer render --tokenizer DIR --input conversations.jsonl --output OUT.jsonl
// [--add-generation-prompt]`: each line {"messages": [...], ...} becomes {"text": ...}, the
// chat template of DIR's tokenizer_config.json applied as transformers' apply_chat_template
// (tokenize=False) does; the line's other keys (tools, documents, enable_thinking, ...) are
// template variables too. Outputs are written atomically.
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "loom/chat/template.h"
#include "loom/cli/commands.h"
#include "loom/io/file_util.h"
#include "loom/tokenizer/config.h"
#include "loom/tokenizer/pipeline.h"
#include "loom/tokenizer/train.h"

namespace loom::cli {

namespace {

namespace fs = std::filesystem;

int train(const std::string& input, int32_t vocab_size, const std::string& output) {
  std::vector<std::string> texts;
  std::vector<fs::path> files;
  if (fs::is_directory(input)) {
    for (const auto& e : fs::recursive_directory_iterator(input))
      if (e.is_regular_file() && e.path().extension() == ".txt") files.push_back(e.path());
  } else {
    files.push_back(input);
  }
  LOOM_CHECK(!files.empty(), "tokenizer train: no .txt files under {}", input);
  for (const fs::path& f : files) texts.push_back(io::read_text_file(f));
  const std::vector<std::string> specials = {"<|endoftext|>"};
  tokenizer::Tokenizer tok = tokenizer::train(texts, vocab_size, specials);
  tok.save(output);
  fmt::print("trained a {}-token vocabulary on {} files -> {}\n", tok.vocab_size(), files.size(), output);
  return 0;
}

using LineFn = std::function<std::string(const nlohmann::ordered_json&)>;

LineFn encode_line(const tokenizer::Tokenizer& tok) {
  return [&tok](const nlohmann::ordered_json& j) { return nlohmann::json(tok.encode(io::text_field(j), true)).dump(); };
}

LineFn decode_line(const tokenizer::Tokenizer& tok) {
  return [&tok](const nlohmann::ordered_json& j) {
    LOOM_CHECK(j.is_array(), "expected a JSON array of token ids, got {}", j.dump().substr(0, 80));
    std::vector<int32_t> ids;
    for (const auto& id : j) {
      const bool ok = id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() < tok.vocab_size() && tok.has_id(int32_t(id.get<int64_t>()));
      LOOM_CHECK(ok, "token id {} is not in the vocabulary of {} ids", id.dump().substr(0, 40), tok.vocab_size());
      ids.push_back(int32_t(id.get<int64_t>()));
    }
    // Bytes that are not UTF-8 (ids that end inside a character) become U+FFFD, as Hugging Face's decode gives.
    return nlohmann::json{{"text", tokenizer::valid_utf8(tok.decode(ids))}}.dump();
  };
}

LineFn render_line(const tokenizer::TokenizerConfig& cfg, const std::string& where, bool add_generation_prompt) {
  LOOM_CHECK(!cfg.chat_template.empty(), "tokenizer render: {} has no chat_template in its tokenizer_config.json", where);
  return [&cfg, add_generation_prompt](const nlohmann::ordered_json& j) {
    LOOM_CHECK(j.is_object() && j.contains("messages") && j["messages"].is_array(), "expected an object with a \"messages\" array");
    nlohmann::ordered_json extra = j;
    extra.erase("messages");
    const std::string text = chat::apply_chat_template(cfg.chat_template, j["messages"], add_generation_prompt, cfg.bos_token.value_or(""),
                                                       cfg.eos_token.value_or(""), extra);
    return nlohmann::json{{"text", text}}.dump();
  };
}

// One output line per input line, written atomically.
int convert(const char* name, const std::string& input, const std::string& output, const LineFn& line) {
  std::string out;
  int64_t lines = 0;
  io::for_each_json_line(input, fmt::format("tokenizer {}", name), [&](const nlohmann::ordered_json& j, int64_t) {
    out += line(j) + "\n";
    ++lines;
  });
  io::AtomicFile f(output);
  f.write(out);
  f.commit();
  fmt::print("tokenizer {}: {} lines -> {}\n", name, lines, output);
  return 0;
}

}  // namespace

Command add_tokenizer(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenizer", "tokenizer tools");
  cmd->require_subcommand(1);
  struct Args {
    std::string input, output, tokenizer;
    int32_t vocab_size = 4096;
    bool add_generation_prompt = false;
  };
  auto a = std::make_shared<Args>();
  auto* tr = cmd->add_subcommand("train", "learn a byte-level BPE vocabulary from text files");
  tr->add_option("--input", a->input, "a text file or a directory of .txt files")->required();
  tr->add_option("--vocab-size", a->vocab_size, "vocabulary size including the 256 bytes and <|endoftext|>");
  tr->add_option("--output", a->output, "tokenizer.json to write")->required();
  auto* enc = cmd->add_subcommand("encode", "text to ids: each {\"text\": ...} line becomes a JSON array of token ids");
  auto* dec = cmd->add_subcommand("decode", "ids to text: each JSON array of token ids becomes a {\"text\": ...} line");
  auto* ren = cmd->add_subcommand("render", "conversations to text: each {\"messages\": [...]} line becomes {\"text\": ...} by the chat template");
  ren->add_flag("--add-generation-prompt", a->add_generation_prompt, "end with the start of an assistant turn");
  for (auto* sub : {enc, dec, ren}) {
    sub->add_option("--tokenizer", a->tokenizer, "tokenizer.json, or a directory holding a tokenizer (and tokenizer_config.json)")->required();
    sub->add_option("--input", a->input, "JSON Lines to read")->required();
    sub->add_option("--output", a->output, "JSON Lines to write")->required();
  }
  return {cmd, [a, tr, enc, ren](const std::shared_ptr<dist::Group>&) {
            if (tr->parsed()) return train(a->input, a->vocab_size, a->output);
            if (ren->parsed()) {
              const tokenizer::TokenizerConfig cfg = tokenizer::load_tokenizer_config(a->tokenizer);
              return convert("render", a->input, a->output, render_line(cfg, a->tokenizer, a->add_generation_prompt));
            }
            const tokenizer::Tokenizer tok = tokenizer::Tokenizer::load(a->tokenizer);
            if (enc->parsed()) return convert("encode", a->input, a->output, encode_line(tok));
            return convert("decode", a->input, a->output, decode_line(tok));
          }};
}

}  // namespace loom::cli
