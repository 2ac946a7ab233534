// Bad input to `loom`: each case must print one clear `error:` line naming the file, key or
// value, exit with code 2, and leave existing checkpoints untouched.
#include "cli_testing.h"

using namespace loom::testing;

namespace {

struct BadInput : ::testing::Test {
  ScratchDir d;
  std::string base;
  void SetUp() override {
    write_tokens(d / "train.bin", 5000, 16, 1);
    base = "train --model.preset=gpt2-tiny --training.steps=2 --training.batch_size=2 --training.seq_len=16 --training.threads=1 ";
  }
  void write(const std::string& name, const std::string& text) { std::ofstream(d / name, std::ios::binary) << text; }
  // Runs args, expects exit 2 and a single error line containing every needle.
  void expect_error(const std::string& args, std::initializer_list<std::string> needles) { expect_one_error(run_loom(args), needles, args); }
};

}  // namespace

TEST_F(BadInput, Config) {
  expect_error(base + "--config " + (d / "missing.toml"), {"missing.toml"});
  write("garbled.toml", "[training\nsteps = 3\n");
  expect_error(base + "--config " + (d / "garbled.toml"), {"garbled.toml", "line 1"});
  write("slash.toml", "[/data]\n");  // toml++ 3.3 asserted (abort) on it
  expect_error(base + "--config " + (d / "slash.toml"), {"slash.toml", "line 1"});
  write("unknown.toml", "[training]\nstepz = 3\n");
  expect_error(base + "--config " + (d / "unknown.toml"), {"training.stepz", "unknown.toml"});
  write("type.toml", "[training]\nsteps = \"ten\"\n");
  expect_error(base + "--config " + (d / "type.toml"), {"training.steps", "integer"});
  expect_error(base + "--data.train=" + (d / "train.bin") + " --optimizer.lr=-1", {"optimizer.lr", "-1"});
  expect_error(base + "--data.train=" + (d / "train.bin") + " --optimizer.schedule=linear", {"optimizer.schedule", "linear"});
  expect_error(base + "--data.train=" + (d / "train.bin") + " --model.preset=gpt5", {"model.preset", "gpt5", "gpt2-124M"});
  expect_error(base + "--data.train=" + (d / "train.bin") + " --bogus.key=1", {"bogus.key"});
  expect_error(base + "--data.train=" + (d / "train.bin") + " --quant.base=nf4", {"quant.base", "lora.r", "model.adapter"});
  expect_error(base + "--data.train=" + (d / "train.bin") + " --lora.r=4 --quant.base=nf3", {"quant.base", "nf3"});
  expect_error(base, {"data.train"});
  expect_error("frobnicate", {"frobnicate"});
}

TEST_F(BadInput, Data) {
  std::string shard = read_file(d / "train.bin");
  write("magic.bin", "XXXX" + shard.substr(4));
  expect_error(base + "--data.train=" + (d / "magic.bin"), {"magic.bin", "bad magic"});
  write("trunc.bin", shard.substr(0, shard.size() - 100));
  expect_error(base + "--data.train=" + (d / "trunc.bin"), {"trunc.bin", "truncated"});
  write_tokens(d / "big.bin", 5000, 300, 3);  // ids up to 299 for a 256-token model
  expect_error(base + "--data.train=" + (d / "big.bin"), {"big.bin", "outside the vocabulary of 256"});
  expect_error(base + "--data.train=" + (d / "nope_*.bin"), {"data.train", "nope_*.bin"});
}

TEST_F(BadInput, CheckpointsAndWeights) {
  const std::string run = base + "--data.train=" + (d / "train.bin") + " --checkpoint.dir=" + (d / "ck");
  ASSERT_EQ(run_loom(run).code, 0);
  const std::string ck = d / "ck/step_00000002";
  const std::string model_bytes = read_file(ck + "/rank00000.safetensors");
  // Another model shape resuming from this checkpoint.
  expect_error(run + " --model.preset=llama-tiny --training.steps=4 --resume", {"step_00000002", "different model"});
  // A corrupted train_state.json.
  const std::string state = read_file(ck + "/train_state.json");
  write("ck/step_00000002/train_state.json", "{ not json");
  expect_error(run + " --training.steps=4 --resume", {"train_state.json"});
  write("ck/step_00000002/train_state.json", state);
  // A corrupted index.json, and a missing rank file.
  const std::string index = read_file(ck + "/index.json");
  write("ck/step_00000002/index.json", index.substr(0, index.size() / 2));
  expect_error(run + " --training.steps=4 --resume", {"index.json"});
  write("ck/step_00000002/index.json", index);
  fs::rename(ck + "/rank00000.safetensors", ck + "/rank.moved");
  expect_error(run + " --training.steps=4 --resume", {"rank00000.safetensors"});
  fs::rename(ck + "/rank.moved", ck + "/rank00000.safetensors");
  // A safetensors header that points past the end of the file (never trust the header).
  std::string bad = model_bytes;
  const size_t at = bad.find("data_offsets\":[0,");
  ASSERT_NE(at, std::string::npos);
  bad.replace(at + 17, 1, "9");
  write("bad.safetensors", bad);
  fs::create_directories(d / "hfbad");
  fs::copy_file(ck + "/config.json", d / "hfbad/config.json");
  fs::copy_file(d / "bad.safetensors", d / "hfbad/model.safetensors");
  expect_error(base + "--data.train=" + (d / "train.bin") + " --model.init=hf:" + (d / "hfbad"), {"model.safetensors"});
  write("hfbad/model.safetensors", "\xff\xff\xff\xff\xff\xff\xff\x7f{}");
  expect_error(base + "--data.train=" + (d / "train.bin") + " --model.init=hf:" + (d / "hfbad"), {"model.safetensors"});
  expect_error(base + "--data.train=" + (d / "train.bin") + " --model.init=llmc:" + (d / "train.bin"), {"train.bin"});
  // None of the failures touched the good checkpoint.
  EXPECT_EQ(read_file(ck + "/rank00000.safetensors"), model_bytes);
  EXPECT_EQ(read_file(ck + "/train_state.json"), state);
}
