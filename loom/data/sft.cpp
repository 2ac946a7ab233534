// SFT examples: rendering, trained spans, tokenization, packing.
#include "loom/data/sft.h"

#include <algorithm>
#include <exception>

#include "loom/chat/template.h"
#include "loom/core/error.h"
#include "loom/io/file_util.h"

namespace loom::data {

namespace {

using ojson = nlohmann::ordered_json;

std::string brief(const ojson& v) { return v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).substr(0, 80); }

std::string string_field(const ojson& j, const std::string& key) {
  LOOM_CHECK(j.contains(key) && j[key].is_string(), "\"{}\" must be a string, got {}", key, j.contains(key) ? brief(j[key]) : "nothing");
  return j[key].get<std::string>();
}

// Text in order, each piece trained or not.
using Pieces = std::vector<std::pair<std::string, bool>>;

// Marks an assistant message's content in a rendering: private-use characters (U+E000, U+E001)
// that no template writes, and that Python's strip() keeps (it strips \x1c-\x1f).
std::string sentinel(size_t i) { return "\xee\x80\x80LOOM_SFT_" + std::to_string(i) + "\xee\x80\x81"; }

// The rendered conversation in pieces: each trained assistant message's content as the template
// writes it, plus what follows it up to and including the first end-of-turn token. The template
// is rendered twice, with the real contents and with a sentinel in place of each assistant
// content; the text between the sentinels (the template's own) locates the contents in the real
// rendering.
Pieces chat_pieces(const ojson& line, const SftTokenizer& t, const std::string& train_on) {
  const ojson& messages = line["messages"];
  LOOM_CHECK(messages.is_array() && !messages.empty(), "\"messages\" must be a non-empty array, got {}", brief(messages));
  LOOM_CHECK(!t.config.chat_template.empty(), "\"messages\" needs a chat_template in the tokenizer's tokenizer_config.json");
  ojson extra = line;
  extra.erase("messages");
  auto render = [&](const ojson& msgs) {
    return chat::apply_chat_template(t.config.chat_template, msgs, false, t.config.bos_token.value_or(""), t.config.eos_token.value_or(""),
                                     extra);
  };
  std::vector<size_t> assistant;  // message indices
  ojson marked = messages;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ojson& m = messages[i];
    LOOM_CHECK(m.is_object() && m.contains("role") && m["role"].is_string(), "\"messages\"[{}] needs a string \"role\", got {}", i, brief(m));
    if (m["role"] != "assistant") continue;
    LOOM_CHECK(m.contains("content") && m["content"].is_string(), "\"messages\"[{}]: an assistant message's \"content\" must be a string, got {}",
               i, m.contains("content") ? brief(m["content"]) : "nothing");
    marked[i]["content"] = sentinel(assistant.size());
    assistant.push_back(i);
  }
  LOOM_CHECK(!assistant.empty(), "\"messages\" holds no assistant message to train on");
  const std::string real = render(messages);
  if (train_on == "all") return {{real, true}};
  // The template's own text around the contents: between[0] before the first, between[k] after the k-th.
  const std::string shape = render(marked);
  std::vector<std::string> between;
  size_t at = 0;
  for (size_t k = 0; k < assistant.size(); ++k) {
    const size_t s = shape.find(sentinel(k), at);
    LOOM_CHECK(s != std::string::npos && shape.find(sentinel(k), s + 1) == std::string::npos,
               "the chat template does not write the content of \"messages\"[{}] once, in order; train it with sft.train_on = \"all\"",
               assistant[k]);
    between.push_back(shape.substr(at, s - at));
    at = s + sentinel(k).size();
  }
  between.push_back(shape.substr(at));
  const Error mismatch(
      "the chat template renders the assistant messages differently when their content changes (it inspects the content); train it "
      "with sft.train_on = \"all\"");
  if (!real.starts_with(between[0])) throw mismatch;
  Pieces out{{between[0], false}};
  size_t pos = between[0].size();
  for (size_t k = 0; k < assistant.size(); ++k) {
    const std::string& after = between[k + 1];
    const bool last = k + 1 == assistant.size();
    const size_t end = !last ? real.find(after, pos) : real.ends_with(after) ? real.size() - after.size() : std::string::npos;
    if (end == std::string::npos || end < pos) throw mismatch;
    const bool trained = train_on == "assistant" || last;
    out.emplace_back(real.substr(pos, end - pos), trained);
    // The end of the turn: the template's text up to and including the first end-of-turn token.
    size_t eot = std::string::npos, eot_len = 0;
    for (int32_t id : t.stop) {
      const std::string_view tok = t.tok.token(id);
      const size_t f = tok.empty() ? std::string::npos : after.find(tok);
      if (f < eot) {
        eot = f;
        eot_len = tok.size();
      }
    }
    const size_t split = eot == std::string::npos ? 0 : eot + eot_len;
    out.emplace_back(after.substr(0, split), trained);
    out.emplace_back(after.substr(split), false);
    pos = end + after.size();
  }
  return out;
}

}  // namespace

SftTokenizer load_sft_tokenizer(const std::filesystem::path& tokenizer, const std::filesystem::path& model_dir) {
  SftTokenizer t{tokenizer::Tokenizer::load(tokenizer), tokenizer::load_tokenizer_config(tokenizer)};
  t.stop = tokenizer::stop_tokens(t.tok, t.config, model_dir);
  auto id_of = [&](const std::optional<std::string>& token, const char* what) -> std::optional<int32_t> {
    if (!token) return std::nullopt;
    auto id = t.tok.token_id(*token);
    LOOM_CHECK(id, "sft: {} {:?} of {}'s tokenizer_config.json is not a token", what, *token, tokenizer.string());
    return id;
  };
  if (t.config.add_bos_token.value_or(true)) t.bos = id_of(t.config.bos_token, "bos_token");
  const std::optional<int32_t> eos = id_of(t.config.eos_token, "eos_token");
  LOOM_CHECK(eos || !t.stop.empty(), "sft: the tokenizer {} names no EOS token (tokenizer_config.json eos_token) to end examples with",
             tokenizer.string());
  t.eos = eos ? *eos : t.stop[0];
  t.pad = id_of(t.config.pad_token, "pad_token").value_or(t.eos);
  return t;
}

SftExample encode_example(const ojson& line, const SftTokenizer& t, const std::string& train_on) {
  LOOM_CHECK(line.is_object(), "expected a JSON object, got {}", brief(line));
  const int kinds = int(line.contains("messages")) + int(line.contains("prompt")) + int(line.contains("text"));
  LOOM_CHECK(kinds == 1, "expected one of \"messages\", \"prompt\" (with \"completion\") and \"text\", got {}", brief(line));
  SftExample ex;
  auto add = [&](const std::vector<int32_t>& ids, bool trained) {
    ex.ids.insert(ex.ids.end(), ids.begin(), ids.end());
    ex.trained.insert(ex.trained.end(), ids.size(), uint8_t(trained));
  };
  if (line.contains("messages")) {
    for (const auto& [text, trained] : chat_pieces(line, t, train_on))
      if (!text.empty()) add(t.tok.encode(text, true), trained);
    return ex;
  }
  if (t.bos) add({*t.bos}, false);
  if (line.contains("prompt")) {
    add(t.tok.encode(string_field(line, "prompt"), true), train_on == "all");
    add(t.tok.encode(string_field(line, "completion"), true), true);
  } else {
    add(t.tok.encode(string_field(line, "text"), true), true);
  }
  add({t.eos}, true);
  return ex;
}

namespace {

class SftRows : public Sequences {
 public:
  SftRows(int64_t T, bool packed) : T_(T), packed_(packed) {}
  int64_t size() const override { return int64_t(inputs_.size()) / T_; }
  int64_t seq_len() const override { return T_; }
  bool packed() const override { return packed_; }
  void read(int64_t i, int64_t* in, int64_t* tgt, int64_t* pos) const override {
    std::copy_n(inputs_.begin() + i * T_, T_, in);
    std::copy_n(targets_.begin() + i * T_, T_, tgt);
    std::copy_n(positions_.begin() + i * T_, T_, pos);
  }
  // Appends a document's n−1 (input, target) pairs at positions 0.. to the open row.
  void put(const SftExample& ex) {
    for (size_t i = 0; i + 1 < ex.ids.size(); ++i) {
      inputs_.push_back(ex.ids[i]);
      targets_.push_back(ex.trained[i + 1] ? ex.ids[i + 1] : -100);
      positions_.push_back(int64_t(i));
    }
  }
  int64_t room() const { return T_ - int64_t(inputs_.size()) % T_; }  // T when no row is open
  // Fills the open row with padding: in a packed row a document of its own, in an unpacked one
  // the rest of the row's one document (positions 0..T-1, as the model sees an unpacked row).
  void close(int32_t pad) {
    if (room() == T_) return;
    const int64_t first = packed_ ? 0 : T_ - room();
    for (int64_t i = 0, n = room(); i < n; ++i) {
      inputs_.push_back(pad);
      targets_.push_back(-100);
      positions_.push_back(first + i);
    }
  }

 private:
  int64_t T_;
  bool packed_;
  std::vector<int64_t> inputs_, targets_, positions_;
};

}  // namespace

std::shared_ptr<const Sequences> sft_sequences(const std::filesystem::path& file, const std::string& key, const SftTokenizer& t,
                                               const SftOptions& o, int64_t vocab_size, SftStats* stats) {
  LOOM_CHECK(o.train_on == "assistant" || o.train_on == "last_assistant" || o.train_on == "all",
             "config: sft.train_on must be \"assistant\", \"last_assistant\" or \"all\", got \"{}\"", o.train_on);
  LOOM_CHECK(o.truncation == "truncate" || o.truncation == "drop", "config: sft.truncation must be \"truncate\" or \"drop\", got \"{}\"",
             o.truncation);
  LOOM_CHECK(o.seq_len >= 1, "{}: sequence length {} must be positive", key, o.seq_len);
  std::vector<std::pair<ojson, int64_t>> lines;
  io::for_each_json_line(file, key, [&](const ojson& j, int64_t n) { lines.emplace_back(j, n); });
  LOOM_CHECK(!lines.empty(), "{}: {} holds no examples", key, file.string());
  // Encoded in parallel; the first bad line (in file order) is the error.
  std::vector<SftExample> examples(lines.size());
  std::vector<std::string> errors(lines.size());
#pragma omp parallel for schedule(dynamic, 16)
  for (size_t i = 0; i < lines.size(); ++i) {
    try {
      examples[i] = encode_example(lines[i].first, t, o.train_on);
      for (int32_t id : examples[i].ids)
        LOOM_CHECK(id >= 0 && id < vocab_size, "token id {} is outside the model's vocabulary of {}", id, vocab_size);
    } catch (const std::exception& e) {
      errors[i] = e.what();
    }
  }
  for (size_t i = 0; i < lines.size(); ++i)
    LOOM_CHECK(errors[i].empty(), "{}: {} line {}: {}", key, file.string(), lines[i].second, errors[i]);
  SftStats s;
  s.examples = int64_t(examples.size());
  auto rows = std::make_shared<SftRows>(o.seq_len, o.packing);
  const size_t max_tokens = size_t(o.seq_len) + 1;
  for (SftExample& ex : examples) {
    if (ex.ids.size() > max_tokens) {
      if (o.truncation == "drop") {
        ++s.too_long;
        continue;
      }
      ++s.truncated;
      ex.ids.resize(max_tokens);
      ex.trained.resize(max_tokens);
    }
    const int64_t trained = ex.ids.empty() ? 0 : std::count(ex.trained.begin() + 1, ex.trained.end(), uint8_t(1));
    if (trained == 0) {
      ++s.untrained;
      continue;
    }
    s.trained_tokens += trained;
    s.tokens += int64_t(ex.ids.size()) - 1;
    if (!o.packing || rows->room() < int64_t(ex.ids.size()) - 1) rows->close(t.pad);
    rows->put(ex);
  }
  rows->close(t.pad);
  s.sequences = rows->size();
  LOOM_CHECK(s.sequences > 0, "{}: none of the {} examples of {} has a trained token within T+1 = {} tokens", key, s.examples, file.string(),
             max_tokens);
  if (stats) *stats = s;
  return rows;
}

}  // namespace loom::data
