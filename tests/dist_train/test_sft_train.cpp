// `loom sft` with packed examples under data, tensor (with sequence) and pipeline parallelism:
// the same losses as one process (packed positions and per-example attention cut up like any
// other batch), and a resume under another layout continues them.
#include <fstream>

#include "train_util.h"

namespace {

// d/tok (a tokenizer trained on a few sentences) and d/sft.jsonl (prompt/completion examples of
// 3 to 12 tokens, several to a packed sequence of 16); returns the --model/--data arguments.
std::string sft_args(const Scratch& d) {
  const std::vector<std::string> words = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "barked", "at", "moon", "twice"};
  {
    std::ofstream text(d / "text.txt");
    for (int i = 0; i < 30; ++i) text << "the cat sat on a mat and the dog barked at the moon twice\n";
    std::ofstream sft(d / "sft.jsonl");
    for (size_t i = 0; i < 64; ++i) {
      std::string completion;
      for (size_t k = 0; k < 1 + (i * 7) % 9; ++k) completion += " " + words[(i + k * 5) % words.size()];
      sft << nlohmann::json({{"prompt", words[i % words.size()] + ":"}, {"completion", completion}}).dump() << "\n";
    }
  }
  fs::create_directories(d / "tok");
  std::string out;
  EXPECT_EQ(run(std::string(LOOM_BIN) + " tokenizer train --input " + (d / "text.txt") + " --vocab-size 280 --output " + (d / "tok/tokenizer.json"), &out), 0) << out;
  std::ofstream(d / "tok/tokenizer_config.json") << R"({"eos_token": "<|endoftext|>"})";
  return "--model.vocab_size=280 --model.tokenizer=" + (d / "tok") + " --data.train=" + (d / "sft.jsonl") + " --sft.packing=true";
}

}  // namespace

TEST(SftTraining, PackedExamplesTrainTheSameUnderEveryLayout) {
  Scratch d;
  const std::string args = sft_args(d) + " --checkpoint.every=10";
  train(d, Layout{0, 0, 4, 1}, "one", args, "sft");
  for (const auto& [name, l, extra] : std::vector<std::tuple<std::string, Layout, std::string>>{
           {"accum2", Layout{0, 0, 2, 2}, ""},
           {"dp2_zero1", Layout{2, 1, 2, 1}, ""},
           {"tp2_sp", Layout{2, 0, 4, 1, 2}, " --parallel.sequence_parallel=true"},
           {"pp2", Layout{2, 0, 2, 2, 1, 2}, ""}}) {
    train(d, l, name, args + extra, "sft");
    expect_same_losses(losses(d / (name + ".jsonl")), losses(d / "one.jsonl"), name);
  }
  // Resumed at step 10 under data parallelism: the rest of the uninterrupted run.
  const std::vector<double> want = losses(d / "one.jsonl");
  fs::create_directories(d / "resumed");
  fs::copy(d / "one/step_00000010", d / "resumed/step_00000010");
  train(d, Layout{2, 0, 2, 1}, "resumed", args + " --resume", "sft");
  expect_same_losses(losses(d / "resumed.jsonl"), std::vector<double>(want.begin() + 10, want.end()), "resumed");
}
