// Data-parallel training matches one process: `mpirun -np N loom train --parallel.zero=Z` with
// batch_size B gives the per-step losses and final parameters of a single process with
// batch_size N·B (the same global batch): losses within 1e-5 relative, parameters within 2e-5
// absolute (they are below 1), for N in {1, 2, 4}, every ZeRO stage (stage 3 with activation
// recompute) and gradient accumulation 1 and 3. A checkpoint written under one layout resumes under another with the losses of the
// uninterrupted run; a rank killed mid-training ends the whole job; a signal stops every rank at
// one step with a checkpoint. LLaMA shape: GPT-2's key bias has an exactly-zero gradient whose
// rounding noise AdamW turns into +-lr steps, which no layout can match.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "loom/io/hf_checkpoint.h"
#include "train_util.h"

namespace {

class DataParallel : public ::testing::TestWithParam<std::tuple<int, int>> {};

TEST_P(DataParallel, EveryZeroStageMatchesOneProcessOnTheSameGlobalBatch) {
  const auto [np, accum] = GetParam();
  Scratch d;
  train(d, 0, 0, 2 * np, accum, "one");
  const std::vector<double> want = losses(d / "one.jsonl");
  ASSERT_EQ(want.size(), 20u);
  for (int zero = 0; zero <= 3; ++zero) {
    const std::string name = "zero" + std::to_string(zero);
    train(d, np, zero, 2 * np, accum, name, zero == 3 ? "--training.recompute=blocks" : "");  // recompute composes with ZeRO-3
    expect_same_losses(losses(d / (name + ".jsonl")), want, name);
    expect_same_params(d / (name + "/step_00000020"), d / "one/step_00000020", name, "", 2e-5);
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, DataParallel, ::testing::Combine(::testing::Values(1, 2, 4), ::testing::Values(1, 3)),
                         [](const auto& info) { return "dp" + std::to_string(std::get<0>(info.param)) + "_accum" + std::to_string(std::get<1>(info.param)); });

// Saved at (dp 4, zero 3) after step 10, resumed at (dp 2, zero 1) and (dp 1, zero 0): steps
// 11-20 give the losses of the run that never stopped.
TEST(DataParallelCheckpoint, ResumesUnderAnotherLayout) {
  Scratch d;
  train(d, 4, 3, 8, 1, "full", "--checkpoint.every=10");
  expect_resumes(d, "full", 10, {{"resume_dp2_zero1", {2, 1, 4, 1}}, {"resume_dp1_zero0", {0, 0, 8, 1}}}, "");
}

// The data position counts sequences, not micro-batches: a checkpoint of (dp 2, batch 4, accum 1)
// resumes under (dp 1, batch 4, accum 2), (dp 4, batch 1, accum 2) and (dp 1, batch 8, accum 1)
// — the same global batch of 8 — with the losses of the run that never stopped, shuffled or not.
TEST(DataParallelCheckpoint, ResumesUnderAnotherSplitOfTheGlobalBatch) {
  for (const char* shuffle : {"true", "false"}) {
    Scratch d;
    const std::string sh = std::string(" --data.shuffle=") + shuffle;
    train(d, Layout{2, 0, 4, 1}, "full", "--checkpoint.every=5 --checkpoint.keep=10" + sh);
    const std::vector<double> full = losses(d / "full.jsonl");
    ASSERT_EQ(full.size(), 20u);
    const std::pair<Layout, int> resumes[] = {{{0, 0, 4, 2}, 5}, {{4, 2, 1, 2}, 10}, {{0, 0, 8, 1}, 15}};
    for (const auto& [l, from] : resumes) {
      const std::string name = fmt::format("resume{}_dp{}_b{}_accum{}", from, std::max(l.np, 1), l.batch, l.accum);
      const std::string step = fmt::format("step_{:08d}", from);
      fs::create_directories(d / name);
      fs::copy(d / ("full/" + step), d / (name + "/" + step));
      train(d, l, name, "--resume" + sh);
      expect_same_losses(losses(d / (name + ".jsonl")), std::vector<double>(full.begin() + from, full.end()),
                         name + " shuffle " + shuffle);
    }
  }
}

// `mpirun -np 2 loom train` for a million steps in the background, in a process group of its
// own that is killed when this goes out of scope.
class BackgroundJob {
 public:
  BackgroundJob(const Scratch& d, const std::string& zero) : metrics_(d / "m.jsonl"), log_(d / "log") {
    const std::string data = "--data.train=" + (d / "train.bin"), m = "--logging.metrics=" + metrics_, z = "--parallel.zero=" + zero,
                      ck = "--checkpoint.dir=" + (d / "ck");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::setpgid(0, 0);
      std::freopen(log_.c_str(), "w", stdout);
      std::freopen(log_.c_str(), "a", stderr);
      ::execl(LOOM_MPIEXEC, LOOM_MPIEXEC, "--oversubscribe", "-np", "2", LOOM_BIN, "train", "--model.preset=llama-tiny", data.c_str(),
              m.c_str(), z.c_str(), ck.c_str(), "--training.steps=1000000", "--training.seq_len=16", "--training.threads=1",
              "--dist.timeout_s=10", static_cast<char*>(nullptr));
      std::_Exit(127);
    }
  }
  ~BackgroundJob() {
    ::kill(-pid_, SIGKILL);  // whatever is left, if the job hung
    if (!done_) ::waitpid(pid_, &status_, 0);
  }
  size_t steps() const {
    if (!fs::exists(metrics_)) return 0;
    const std::string text = io::read_text_file(metrics_);
    return size_t(std::count(text.begin(), text.end(), '\n'));
  }
  bool wait_steps(size_t n) const {
    for (auto t0 = Clock::now(); steps() < n && Clock::now() - t0 < std::chrono::seconds(60);)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return steps() >= n;
  }
  std::string log() const { return io::read_text_file(log_); }
  pid_t pid() const { return pid_; }
  std::vector<pid_t> ranks() const {
    std::string out;
    run("pgrep -P " + std::to_string(pid_) + " -x loom", &out);
    std::istringstream in(out);
    std::vector<pid_t> pids;
    for (long p; in >> p;) pids.push_back(pid_t(p));
    return pids;
  }
  // Seconds until the job ended (at most `limit`); status() is then its wait status.
  double wait_exit(double limit) {
    const auto t0 = Clock::now();
    while (!done_ && Clock::now() - t0 < std::chrono::duration<double>(limit)) {
      done_ = ::waitpid(pid_, &status_, WNOHANG) == pid_;
      if (!done_) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return std::chrono::duration<double>(Clock::now() - t0).count();
  }
  bool done() const { return done_; }
  int status() const { return status_; }

 private:
  using Clock = std::chrono::steady_clock;
  std::string metrics_, log_;
  pid_t pid_ = -1;
  bool done_ = false;
  int status_ = 0;
};

// SIGKILL one of two ranks after a few steps: mpirun must end the job non-zero, well within
// dist.timeout_s, and no rank may live on.
TEST(DataParallelFailure, KillingOneRankEndsTheJob) {
  Scratch d;
  BackgroundJob job(d, "2");
  ASSERT_TRUE(job.wait_steps(3)) << job.log();
  const std::vector<pid_t> ranks = job.ranks();
  ASSERT_EQ(ranks.size(), 2u);
  ::kill(ranks[1], SIGKILL);
  const double took = job.wait_exit(30);
  ASSERT_TRUE(job.done()) << "the job still ran " << took << " s after a rank was killed";
  EXPECT_TRUE(!WIFEXITED(job.status()) || WEXITSTATUS(job.status()) != 0) << "the job exited 0";
  EXPECT_LT(took, 10.0);
  std::string state;  // the survivor is gone, or a zombie no one has reaped yet (not running)
  run("ps -o stat= -p " + std::to_string(ranks[0]), &state);
  EXPECT_TRUE(state.empty() || state[0] == 'Z') << "the surviving rank lives on: " << state;
}

// A config error every rank hits is reported once (by rank 0), with exit code 2.
TEST(DataParallelFailure, AnErrorOfEveryRankIsReportedOnce) {
  std::string out;
  EXPECT_EQ(run(std::string(LOOM_MPIEXEC) + " --oversubscribe -np 2 " LOOM_BIN " train --data.train=none.bin --training.steps=0", &out), 2);
  size_t errors = 0;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) errors += line.rfind("error:", 0) == 0;
  EXPECT_EQ(errors, 1u) << out;
  EXPECT_NE(out.find("error: rank 0: config: training.steps must be at least 1, got 0"), std::string::npos) << out;
}

// SIGUSR1 to mpirun (which forwards it): every rank stops at the same step, the sharded
// checkpoint of that step is complete, and the job exits 0.
TEST(DataParallelSignal, SigusrToMpirunSavesAndStops) {
  Scratch d;
  BackgroundJob job(d, "3");
  ASSERT_TRUE(job.wait_steps(3)) << job.log();
  ::kill(job.pid(), SIGUSR1);
  job.wait_exit(30);
  ASSERT_TRUE(job.done()) << job.log();
  ASSERT_TRUE(WIFEXITED(job.status()) && WEXITSTATUS(job.status()) == 0) << job.log();
  const size_t last = job.steps();
  const std::string ck = d / fmt::format("ck/step_{:08d}", last);
  EXPECT_TRUE(fs::exists(ck + "/COMPLETE")) << job.log();
  EXPECT_TRUE(fs::exists(ck + "/rank00000.safetensors") && fs::exists(ck + "/rank00001.safetensors"));
  EXPECT_NE(job.log().find(fmt::format("stopped by signal {} at step {}; checkpoint saved", SIGUSR1, last)), std::string::npos) << job.log();
}

}  // namespace
