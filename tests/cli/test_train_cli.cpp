// `loom train` end to end: the loss falls, metrics are written, resume is bit-identical to an
// uninterrupted run, SIGTERM saves a checkpoint, and a checkpoint converts and generates.
#include <csignal>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli_testing.h"

using namespace loom::testing;

namespace {

std::string tiny_run(const ScratchDir& d, int steps, const std::string& extra = "") {
  return "train --model.preset=gpt2-tiny --data.train=" + (d / "train.bin") + " --data.val=" + (d / "val.bin") +
         " --training.steps=" + std::to_string(steps) +
         " --training.batch_size=2 --training.seq_len=16 --training.threads=1 --optimizer.lr=3e-3 --optimizer.warmup_steps=2 " + extra;
}

std::vector<nlohmann::json> metrics(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

// Both metrics files hold `steps` records with bit-identical steps, losses and grad norms.
void expect_bit_identical(const std::string& want_file, const std::string& got_file, size_t steps) {
  auto a = metrics(want_file), b = metrics(got_file);
  ASSERT_EQ(a.size(), steps);
  ASSERT_EQ(b.size(), steps);
  for (size_t i = 0; i < steps; ++i) {
    EXPECT_EQ(b[i]["step"], a[i]["step"]);
    EXPECT_EQ(b[i]["loss"].get<double>(), a[i]["loss"].get<double>()) << "step " << i + 1;
    EXPECT_EQ(b[i]["grad_norm"].get<double>(), a[i]["grad_norm"].get<double>()) << "step " << i + 1;
  }
}

struct TrainCli : ::testing::Test {
  ScratchDir d;
  void SetUp() override {
    // 16 distinct ids in a mostly periodic pattern: learnable within a few dozen steps.
    write_tokens(d / "train.bin", 20000, 16, 1);
    write_tokens(d / "val.bin", 2000, 16, 2);
  }
};

}  // namespace

TEST_F(TrainCli, LossFallsAndMetricsAreWritten) {
  // The metrics file's directory does not exist yet: it is made, as checkpoint.dir is.
  RunResult r = run_loom(tiny_run(d, 40, "--eval.every=20 --eval.batches=2 --logging.metrics=" + (d / "logs/run1/m.jsonl")));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("step    40/40"), std::string::npos) << r.out;
  auto m = metrics(d / "logs/run1/m.jsonl");
  ASSERT_EQ(m.size(), 40u);
  EXPECT_EQ(m[0]["step"], 1);
  for (const char* key : {"loss", "lr", "grad_norm", "tokens_per_s"}) EXPECT_TRUE(m[5].contains(key)) << key;
  EXPECT_TRUE(m[19].contains("val_loss"));
  EXPECT_FALSE(m[18].contains("val_loss"));
  EXPECT_LT(m[39]["loss"].get<double>(), m[0]["loss"].get<double>() - 1.0);
}

TEST_F(TrainCli, ResumeIsBitIdenticalToAnUninterruptedRun) {
  // A constant schedule makes a 10-step run the first half of the 20-step one.
  const std::string common = "--data.shuffle=true --training.grad_accum=2 --optimizer.schedule=constant ";
  RunResult full = run_loom(tiny_run(d, 20, common + "--logging.metrics=" + (d / "full.jsonl")));
  ASSERT_EQ(full.code, 0) << full.out;
  const std::string ck = "--checkpoint.dir=" + (d / "ck") + " --logging.metrics=" + (d / "part.jsonl") + " ";
  RunResult first = run_loom(tiny_run(d, 10, common + ck));
  ASSERT_EQ(first.code, 0) << first.out;
  RunResult second = run_loom(tiny_run(d, 20, common + ck + "--resume"));
  ASSERT_EQ(second.code, 0) << second.out;
  EXPECT_NE(second.out.find("resumed from"), std::string::npos) << second.out;
  expect_bit_identical(d / "full.jsonl", d / "part.jsonl", 20);
  EXPECT_EQ(second.out.find("global batch changed"), std::string::npos) << second.out;
  // Another global batch continues from the same sequence (2 sequences × 2 micro-steps × 10 steps)
  // and says so once.
  RunResult third = run_loom(tiny_run(d, 25, common + ck + "--resume --training.grad_accum=3"));
  ASSERT_EQ(third.code, 0) << third.out;
  EXPECT_NE(third.out.find("resumed from " + (d / "ck/step_00000020") + " (step 20, 80 sequences consumed)\n"
                           "the global batch changed from 4 to 6 sequences per step; the data continues from sequence 80\n"),
            std::string::npos) << third.out;
}

TEST_F(TrainCli, SigtermSavesACheckpointAndExitsCleanly) {
  const std::string cmd = std::string(LOOM_BIN) + " " + tiny_run(d, 100000, "--checkpoint.dir=" + (d / "ck")) + " > " + (d / "log") + " 2>&1";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), nullptr);
    ::_exit(127);
  }
  for (int i = 0; i < 600 && read_file(d / "log").find("step     3/") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << read_file(d / "log");
  EXPECT_EQ(WEXITSTATUS(status), 0) << read_file(d / "log");
  EXPECT_NE(read_file(d / "log").find("stopped by signal"), std::string::npos);
  bool complete = false;
  for (const auto& e : fs::directory_iterator(d / "ck")) complete = complete || fs::exists(e.path() / "COMPLETE");
  EXPECT_TRUE(complete);
}

TEST_F(TrainCli, CheckpointConvertsToLlmcAndBackBitExactly) {
  ASSERT_EQ(run_loom(tiny_run(d, 3, "--checkpoint.dir=" + (d / "ck"))).code, 0);
  const std::string ck = d / "ck/step_00000003";
  RunResult a = run_loom("convert --from hf:" + ck + " --to llmc:" + (d / "m.bin"));
  ASSERT_EQ(a.code, 0) << a.out;
  RunResult b = run_loom("convert --from llmc:" + (d / "m.bin") + " --to hf:" + (d / "hf"));
  ASSERT_EQ(b.code, 0) << b.out;
  RunResult c = run_loom("convert --from hf:" + (d / "hf") + " --to llmc:" + (d / "m2.bin"));
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_EQ(read_file(d / "m.bin"), read_file(d / "m2.bin"));
  RunResult again = run_loom("convert --from hf:" + (d / "hf") + " --to llmc:" + (d / "m2.bin"));
  EXPECT_EQ(again.code, 2) << again.out;  // refuses to overwrite
}

TEST_F(TrainCli, RecomputeGivesTheSameLossesAndPeakFlopsCanBeSet) {
  RunResult plain = run_loom(tiny_run(d, 5, "--logging.metrics=" + (d / "plain.jsonl")));
  ASSERT_EQ(plain.code, 0) << plain.out;
  EXPECT_NE(plain.out.find("MFU is relative to "), std::string::npos) << plain.out;
  RunResult rc = run_loom(tiny_run(d, 5, "--training.recompute=blocks --logging.peak_flops=1e9 --logging.metrics=" + (d / "rc.jsonl")));
  ASSERT_EQ(rc.code, 0) << rc.out;
  EXPECT_NE(rc.out.find("MFU is relative to 1 GFLOP/s (logging.peak_flops)"), std::string::npos) << rc.out;
  expect_bit_identical(d / "plain.jsonl", d / "rc.jsonl", 5);
  RunResult bad = run_loom(tiny_run(d, 5, "--training.recompute=layers"));
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.out.find("error: config: training.recompute must be none or blocks, got 'layers'"), std::string::npos) << bad.out;
}
