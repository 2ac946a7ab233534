// Data-parallel training matches one process: `mpirun -np N loom train` with batch_size B gives
// the per-step losses and final parameters of a single process with batch_size N·B (the same
// global batch): losses within 1e-5 relative, parameters within 1e-5 absolute (they are below 1),
// for N in {1, 2, 4} and gradient accumulation 1 and 3. LLaMA shape: GPT-2's key bias has an
// exactly-zero gradient whose rounding noise AdamW turns into +-lr steps, which no layout can match.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "loom/core/rng.h"
#include "loom/data/shards.h"
#include "loom/io/file_util.h"
#include "loom/io/safetensors.h"

namespace fs = std::filesystem;
using namespace loom;

namespace {

struct Scratch {
  fs::path path = fs::temp_directory_path() / ("loom_ddp_" + std::to_string(::getpid()));
  Scratch() { fs::create_directories(path); }
  ~Scratch() { fs::remove_all(path); }
  std::string operator/(const std::string& n) const { return (path / n).string(); }
};

int run(const std::string& cmd, std::string* out) {
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
  const int status = ::pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

std::vector<double> losses(const std::string& metrics) {
  std::vector<double> out;
  std::istringstream in(io::read_text_file(metrics));
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line)["loss"].get<double>());
  return out;
}

class Ddp : public ::testing::TestWithParam<std::tuple<int, int>> {};

TEST_P(Ddp, MatchesOneProcessOnTheSameGlobalBatch) {
  const auto [np, accum] = GetParam();
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);  // CI runs as root
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  Scratch d;
  std::vector<uint32_t> toks(40000);
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = i % 5 == 0 ? uint32_t(uniform_at(4, i) * 64) : uint32_t((i * 7) % 64);
  data::write_shard(d / "train.bin", toks, false);
  auto train = [&](const std::string& prefix, int batch, const std::string& name) {
    std::string out;
    const std::string cmd = prefix + " " LOOM_BIN " train --model.preset=llama-tiny --data.train=" + (d / "train.bin") +
                            " --data.shuffle=true --training.steps=20 --training.seq_len=16 --training.threads=1 --optimizer.lr=1e-3"
                            " --training.batch_size=" + std::to_string(batch) + " --training.grad_accum=" + std::to_string(accum) +
                            " --logging.metrics=" + (d / (name + ".jsonl")) + " --checkpoint.dir=" + (d / name);
    EXPECT_EQ(run(cmd, &out), 0) << cmd << "\n" << out;
  };
  train("", 2 * np, "one");
  train(std::string(LOOM_MPIEXEC) + " --oversubscribe -np " + std::to_string(np), 2, "ddp");
  std::vector<double> a = losses(d / "one.jsonl"), b = losses(d / "ddp.jsonl");
  ASSERT_EQ(a.size(), 20u);
  ASSERT_EQ(b.size(), 20u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(b[i], a[i], 1e-5 * std::abs(a[i])) << "step " << i + 1;
  auto pa = io::read_safetensors(d / "one/step_00000020/model.safetensors");
  auto pb = io::read_safetensors(d / "ddp/step_00000020/model.safetensors");
  ASSERT_EQ(pa.size(), pb.size());
  for (auto& [name, t] : pa) {
    std::vector<double> x = t.to_vector(), y = pb.at(name).to_vector();
    double scale = 0, err = 0;
    for (size_t i = 0; i < x.size(); ++i) scale = std::max(scale, std::abs(x[i])), err = std::max(err, std::abs(x[i] - y[i]));
    EXPECT_LE(err, 1e-5 * std::max(scale, 1.0)) << name << " (max |param| " << scale << ")";
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, Ddp, ::testing::Combine(::testing::Values(1, 2, 4), ::testing::Values(1, 3)),
                         [](const auto& info) { return "dp" + std::to_string(std::get<0>(info.param)) + "_accum" + std::to_string(std::get<1>(info.param)); });

}  // namespace
