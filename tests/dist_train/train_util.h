// Shared by the dist_train tests: a scratch directory with a token shard, `loom train` under a
// layout (mpirun or one process), and the metrics it logged.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "loom/core/rng.h"
#include "loom/data/shards.h"
#include "loom/io/file_util.h"
#include "loom/io/hf_checkpoint.h"
#include "loom/io/safetensors.h"

namespace fs = std::filesystem;
using namespace loom;

// Set once in every test process, before its first mpiexec: ranks may run as root (CI runs as
// root), and OpenMPI's session directories go under a directory of this process's own. Under the
// shared default, two mpiexec starting at the same moment (ctest -j 2) can race to create it, and
// one fails in orte_init ("session_dir.c ... File exists").
inline const bool kMpiEnvironment = [] {
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  static const std::string dir = (fs::temp_directory_path() / ("loom_ompi_" + std::to_string(::getpid()))).string();
  ::setenv("OMPI_MCA_orte_tmpdir_base", dir.c_str(), 1);
  std::atexit([] { ::rmdir(dir.c_str()); });  // OpenMPI empties it after each run
  return true;
}();

struct Scratch {
  fs::path path = fs::temp_directory_path() / ("loom_ddp_" + std::to_string(::getpid()));
  Scratch() {
    fs::create_directories(path);
    std::vector<uint32_t> toks(40000);
    for (size_t i = 0; i < toks.size(); ++i) toks[i] = i % 5 == 0 ? uint32_t(uniform_at(4, i) * 64) : uint32_t((i * 7) % 64);
    data::write_shard((path / "train.bin").string(), toks, false);
  }
  ~Scratch() { fs::remove_all(path); }
  std::string operator/(const std::string& n) const { return (path / n).string(); }
};

inline int run(const std::string& cmd, std::string* out) {
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
  const int status = ::pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

// One field of every line of a metrics file.
inline std::vector<double> series(const std::string& metrics, const char* key) {
  std::vector<double> out;
  std::istringstream in(io::read_text_file(metrics));
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line)[key].get<double>());
  return out;
}

inline std::vector<double> losses(const std::string& metrics) { return series(metrics, "loss"); }

// How one run splits its global batch: np ranks (0: one process without mpirun), ZeRO stage,
// sequences per micro-batch and data-parallel rank, micro-batches per step, tensor-parallel ranks,
// pipeline stages.
struct Layout {
  int np, zero, batch, accum, tp = 1, pp = 1;
};

// Runs `loom train` (or `loom sft`) under a layout, logging to d/name.jsonl and checkpointing into d/name.
inline void train(const Scratch& d, Layout l, const std::string& name, const std::string& extra = "", const std::string& command = "train") {
  const std::string prefix = l.np == 0 ? "" : std::string(LOOM_MPIEXEC) + " --oversubscribe -np " + std::to_string(l.np) + " ";
  const std::string cmd = prefix + LOOM_BIN " " + command + " --model.preset=llama-tiny --data.train=" + (d / "train.bin") +
                          " --data.shuffle=true --training.steps=20 --training.seq_len=16 --training.threads=1 --optimizer.lr=1e-3"
                          " --training.batch_size=" + std::to_string(l.batch) + " --training.grad_accum=" + std::to_string(l.accum) +
                          " --parallel.zero=" + std::to_string(l.zero) + " --parallel.tp=" + std::to_string(l.tp) + " --parallel.pp=" + std::to_string(l.pp) + " --logging.metrics=" + (d / (name + ".jsonl")) +
                          " --checkpoint.dir=" + (d / name) + " " + extra;
  std::string out;
  ASSERT_EQ(run(cmd, &out), 0) << cmd << "\n" << out;
}

// np ranks with `global` sequences per micro-step in all.
inline void train(const Scratch& d, int np, int zero, int global, int accum, const std::string& name, const std::string& extra = "") {
  train(d, Layout{np, zero, global / std::max(np, 1), accum}, name, extra);
}

// Within `rel` relative (0: bit for bit), step by step.
inline void expect_same_losses(const std::vector<double>& got, const std::vector<double>& want, const std::string& what, double rel = 1e-5) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], rel * std::abs(want[i])) << what << ", step " << i + 1;
}


// Max |a - b| over every parameter but those whose name holds `skip`, within tol × max(1, max
// |param|). AdamW turns rounding-level differences of near-zero gradients (sums taken in another
// order) into parameter differences of up to ±lr per step, so the noise scales with lr: after 20
// steps 2e-5 holds at lr 1e-3 for data parallelism, 1e-5 at lr 1e-4 for tensor and pipeline
// parallelism (a wrong gradient moves a parameter by about lr, far more).
inline void expect_same_params(const std::string& got_dir, const std::string& want_dir, const std::string& what, const std::string& skip,
                               double tol) {
  const auto want = io::load_hf(want_dir).state, got = io::load_hf(got_dir).state;
  ASSERT_EQ(got.size(), want.size()) << what;
  for (const auto& [name, t] : want) {
    if (!skip.empty() && name.find(skip) != std::string::npos) continue;
    std::vector<double> x = t.to_vector(), y = got.at(name).to_vector();
    double scale = 1, err = 0;
    for (size_t i = 0; i < x.size(); ++i) scale = std::max(scale, std::abs(x[i])), err = std::max(err, std::abs(x[i] - y[i]));
    EXPECT_LE(err, tol * scale) << what << ": " << name << " (max |param| " << scale << ")";
  }
}

// Run `name` against run `want` (20 steps each): losses and gradient norms within 1e-5 relative,
// final parameters within 1e-5 (the model- and pipeline-parallel tests run at lr 1e-4). GPT-2's
// key bias has an exactly-zero gradient whose rounding noise AdamW turns into ±lr steps (see
// test_ddp.cpp); it cannot change a loss, and `skip` leaves it out.
inline void expect_same_run(const Scratch& d, const std::string& name, const std::string& want, const std::string& what,
                            const std::string& skip) {
  expect_same_losses(losses(d / (name + ".jsonl")), losses(d / (want + ".jsonl")), what);
  expect_same_losses(series(d / (name + ".jsonl"), "grad_norm"), series(d / (want + ".jsonl"), "grad_norm"), what + " grad norm");
  expect_same_params(d / (name + "/step_00000020"), d / (want + "/step_00000020"), what, skip, 1e-5);
}

// The PEFT adapter files of two checkpoints: every tensor within 2e-5 × max(1, max |tensor|).
inline void expect_same_adapter(const std::string& got_dir, const std::string& want_dir, const std::string& what) {
  const auto want = io::read_safetensors(want_dir + "/adapter_model.safetensors");
  const auto got = io::read_safetensors(got_dir + "/adapter_model.safetensors");
  ASSERT_EQ(got.size(), want.size()) << what;
  for (const auto& [name, t] : want) {
    const std::vector<double> x = t.to_vector(), y = got.at(name).to_vector();
    double err = 0, scale = 1;
    for (size_t i = 0; i < x.size(); ++i) scale = std::max(scale, std::abs(x[i])), err = std::max(err, std::abs(x[i] - y[i]));
    EXPECT_LE(err, 2e-5 * scale) << what << ": " << name;
  }
}

// Resumes the checkpoint of step `from` of run `full` (20 steps) under each layout, in a run of
// its own, and expects the losses of the run that never stopped from there on (within `rel`).
inline void expect_resumes(const Scratch& d, const std::string& full, int from, const std::vector<std::pair<std::string, Layout>>& layouts,
                           const std::string& extra, double rel = 1e-5) {
  const std::vector<double> want = losses(d / (full + ".jsonl"));
  ASSERT_EQ(want.size(), 20u);
  const std::string step = fmt::format("step_{:08d}", from);
  for (const auto& [name, l] : layouts) {
    fs::create_directories(d / name);
    fs::copy(d / (full + "/" + step), d / (name + "/" + step));
    train(d, l, name, "--resume " + extra);
    expect_same_losses(losses(d / (name + ".jsonl")), std::vector<double>(want.begin() + from, want.end()), name, rel);
  }
}
