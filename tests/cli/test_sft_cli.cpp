// `loom sft` end to end on a tokenizer trained in the test: the step's loss is the sum over its
// trained tokens over their number in the whole step (checked against the model computed here),
// whatever the split into micro-batches; eval.base and eval.patience with its best checkpoint;
// replay; bad input.
#include <cmath>

#include "cli_testing.h"
#include "loom/autograd/function.h"
#include "loom/data/sft.h"
#include "loom/nn/transformer.h"
#include "loom/ops/nn.h"

using namespace loom::testing;
using json = nlohmann::json;

namespace {

// d/tok (a byte-level BPE trained on the corpus, EOS <|endoftext|>), d/train.jsonl and d/val.jsonl
// (prompt/completion examples of different lengths), d/data (token shards of the corpus). Returns
// the vocabulary size.
int64_t setup(const ScratchDir& d) {
  write_corpus(d);
  fs::create_directories(d.path / "tok");
  EXPECT_EQ(run_loom("tokenizer train --input " + (d / "corpus.txt") + " --vocab-size 300 --output " + (d / "tok/tokenizer.json")).code, 0);
  std::ofstream(d / "tok/tokenizer_config.json") << R"({"eos_token": "<|endoftext|>"})";
  EXPECT_EQ(run_loom("prepare --tokenizer " + (d / "tok") + " --input " + (d / "docs.jsonl") + " --output " + (d / "data")).code, 0);
  const std::vector<std::string> words = {"The", "cat", "sat", "on", "the", "mat.", "A", "dog", "barked", "at", "moon,", "twice!"};
  for (const char* name : {"train.jsonl", "val.jsonl"}) {
    std::ofstream f(d / name);
    for (size_t i = 0; i < 16; ++i) {
      std::string prompt = words[i % words.size()], completion;
      for (size_t k = 0; k < 1 + (i * 5 + (name[0] == 'v')) % 7; ++k) completion += " " + words[(i + k * 3) % words.size()];
      f << json({{"prompt", prompt + ":"}, {"completion", completion}}).dump() << "\n";
    }
  }
  const json tj = json::parse(read_file(d / "tok/tokenizer.json"));
  int64_t vocab = 0;
  for (const auto& [token, id] : tj["model"]["vocab"].items()) vocab = std::max(vocab, id.get<int64_t>() + 1);
  for (const json& a : tj["added_tokens"]) vocab = std::max(vocab, a["id"].get<int64_t>() + 1);
  return vocab;
}

std::vector<json> metrics(const std::string& path) {
  std::vector<json> out;
  std::ifstream f(path);
  for (std::string line; std::getline(f, line);) out.push_back(json::parse(line));
  return out;
}

}  // namespace

TEST(SftCli, StepLossIsTheMeanOverTheStepsTrainedTokens) {
  ScratchDir d;
  const int64_t V = setup(d);
  const std::string common = " --model.preset=llama-tiny --model.vocab_size=" + std::to_string(V) + " --model.tokenizer=" + (d / "tok") +
                             " --data.train=" + (d / "train.jsonl") + " --training.seq_len=16 --training.steps=1 --training.threads=1";
  const RunResult split = run_loom("sft" + common + " --training.batch_size=2 --training.grad_accum=2 --logging.metrics=" + (d / "a.jsonl"));
  ASSERT_EQ(split.code, 0) << split.out;
  EXPECT_NE(split.out.find("data.train: 16 examples -> 16 sequences of 16 (padded)"), std::string::npos) << split.out;
  const RunResult whole = run_loom("sft" + common + " --training.batch_size=4 --logging.metrics=" + (d / "b.jsonl"));
  ASSERT_EQ(whole.code, 0) << whole.out;

  // The same step computed here: the model as the trainer initialises it, the first four rows.
  loom::models::ModelConfig mc = loom::models::preset("llama-tiny");
  mc.vocab_size = mc.padded_vocab = V;
  loom::nn::TransformerLM model(mc);
  model.init(1337);
  const loom::data::SftTokenizer tok = loom::data::load_sft_tokenizer(d / "tok", d / "tok");
  auto rows = loom::data::sft_sequences(d / "train.jsonl", "data.train", tok, {"assistant", false, "truncate", 16}, V);
  loom::autograd::NoGradGuard no_grad;
  double sum = 0, mean_of_means = 0;
  int64_t count = 0;
  for (int64_t half = 0; half < 2; ++half) {
    std::vector<int64_t> in(32), tgt(32), pos(32);
    for (int64_t r = 0; r < 2; ++r) rows->read(half * 2 + r, in.data() + r * 16, tgt.data() + r * 16, pos.data() + r * 16);
    const loom::Tensor logits = model.forward(loom::Tensor::from_ints(in, {2, 16}));
    const double s = model.loss(logits, loom::Tensor::from_ints(tgt, {2, 16}), loom::ops::Reduction::sum).item();
    const auto n = int64_t(std::count_if(tgt.begin(), tgt.end(), [](int64_t t) { return t != -100; }));
    sum += s;
    count += n;
    mean_of_means += s / double(n) / 2;
  }
  const double loss = metrics(d / "a.jsonl").at(0)["loss"].get<double>();
  EXPECT_NEAR(loss, sum / double(count), 1e-5 * loss);
  EXPECT_NEAR(metrics(d / "b.jsonl").at(0)["loss"].get<double>(), loss, 1e-6 * loss);
  // The micro-batches hold 11 and 16 trained tokens: a mean of their means is 2e-4 off, 20 times
  // the tolerance above (at initialisation every token's loss is close to ln V).
  EXPECT_GT(std::abs(mean_of_means - loss), 1e-4 * loss);
}

TEST(SftCli, BaseEvalPatienceBestCheckpointAndReplay) {
  ScratchDir d;
  const int64_t V = setup(d);
  // A constant, far too high learning rate: the validation loss soon stops improving.
  const RunResult r = run_loom("sft --model.preset=llama-tiny --model.vocab_size=" + std::to_string(V) + " --model.tokenizer=" + (d / "tok") +
                               " --data.train=" + (d / "train.jsonl") + " --data.val=" + (d / "val.jsonl") + " --data.replay=" + (d / "data") +
                               " --data.replay_fraction=0.25 --eval.base=" + (d / "data") +
                               " --eval.every=1 --eval.batches=2 --eval.patience=2 --sft.packing=true --training.batch_size=2 --training.seq_len=32"
                               " --training.steps=60 --optimizer.lr=0.05 --optimizer.schedule=constant --training.threads=1 --checkpoint.keep=1"
                               " --checkpoint.dir=" + (d / "ck") + " --logging.metrics=" + (d / "m.jsonl"));
  ASSERT_EQ(r.code, 0) << r.out;
  const std::vector<json> m = metrics(d / "m.jsonl");
  ASSERT_LT(m.size(), 60u) << r.out;
  EXPECT_NE(r.out.find("stopping early at step " + std::to_string(m.size())), std::string::npos) << r.out;
  size_t best = 0;
  for (size_t i = 0; i < m.size(); ++i) {
    EXPECT_NEAR(m[i]["base_ppl"].get<double>(), std::exp(m[i]["base_loss"].get<double>()), 1e-9 * m[i]["base_ppl"].get<double>());
    if (m[i]["val_loss"].get<double>() < m[best]["val_loss"].get<double>()) best = i;
  }
  EXPECT_EQ(m.size() - 1 - best, 2u);  // stopped after two evaluations without improvement
  const std::string best_dir = fmt::format("step_{:08d}", best + 1);
  ASSERT_TRUE(fs::is_symlink(d / "ck/best")) << r.out;
  EXPECT_EQ(fs::read_symlink(d / "ck/best").string(), best_dir);
  EXPECT_TRUE(fs::exists(d / ("ck/" + best_dir + "/COMPLETE")));  // kept although checkpoint.keep = 1 and newer ones were written
  EXPECT_TRUE(fs::exists(d / "ck/best/tokenizer.json"));           // the checkpoint carries model.tokenizer's files
  const json state = json::parse(read_file(d / ("ck/" + best_dir + "/train_state.json")));
  EXPECT_EQ(state["best"]["step"].get<size_t>(), best + 1);
  EXPECT_DOUBLE_EQ(state["best"]["val_loss"].get<double>(), m[best]["val_loss"].get<double>());
  // The best checkpoint is a model directory: eval scores it with its own tokenizer.
  const RunResult e = run_loom("eval --task ppl --model " + (d / "ck/best") + " --data " + (d / "docs.jsonl") + " --seq-len 32");
  EXPECT_EQ(e.code, 0) << e.out;
}

TEST(SftCli, BadInput) {
  ScratchDir d;
  const int64_t V = setup(d);
  std::ofstream(d / "bad.jsonl") << R"({"prompt": "a", "completion": "b"})" << "\n" << R"({"prompt": "a"})" << "\n";
  const std::string base = "sft --model.preset=llama-tiny --model.vocab_size=" + std::to_string(V) + " --training.steps=1";
  const std::string tok = " --model.tokenizer=" + (d / "tok");
  for (const auto& [args, needles] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {" --data.train=" + (d / "train.jsonl"), {"model.tokenizer is not set"}},
           {tok + " --data.train=" + (d / "bad.jsonl"), {"data.train", "bad.jsonl line 2", "\"completion\" must be a string"}},
           {tok + " --data.train=" + (d / "train.jsonl") + " --sft.train_on=assistants", {"sft.train_on", "assistants"}},
           {tok + " --data.train=" + (d / "train.jsonl") + " --sft.truncation=cut", {"sft.truncation", "cut"}},
           {tok + " --data.train=" + (d / "train.jsonl") + " --data.replay=" + (d / "data"), {"data.replay", "data.replay_fraction"}},
           {tok + " --data.train=" + (d / "train.jsonl") + " --eval.patience=3", {"eval.patience", "eval.every"}},
           {tok + " --data.train=" + (d / "nothing.jsonl"), {"data.train", "cannot read", "nothing.jsonl"}},
           {tok + " --data.train=" + (d / "data"), {"data.train", "loom sft reads JSON Lines examples"}}}) {
    expect_one_error(run_loom(base + args), needles, args);
  }
  // And the other way round: `loom train` on examples.
  expect_one_error(run_loom("train --data.train=" + (d / "train.jsonl")), {"data.train", "loom train reads token shards"}, "train");
}
