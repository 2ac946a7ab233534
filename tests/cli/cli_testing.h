// Helpers for end-to-end tests of the `loom` binary: run it, capture exit code and output,
// make scratch directories and tiny token shards.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "loom/core/rng.h"
#include "loom/data/shards.h"

namespace loom::testing {

namespace fs = std::filesystem;

struct RunResult {
  int code;
  std::string out;  // stdout and stderr together
};

// Runs a shell command line, stderr into the output too.
inline RunResult run_command(const std::string& command) {
  std::string cmd = command + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), out};
}

// Runs `loom <args>` (args are passed to the shell as written).
inline RunResult run_loom(const std::string& args) { return run_command(std::string(LOOM_BIN) + " " + args); }

// Bad input: exit code 2 and exactly one `error:` line, which contains every needle.
inline void expect_one_error(const RunResult& r, const std::vector<std::string>& needles, const std::string& args) {
  EXPECT_EQ(r.code, 2) << args << "\n" << r.out;
  size_t errors = 0;
  for (size_t p = 0; (p = r.out.find("error:", p)) != std::string::npos; ++p) ++errors;
  EXPECT_EQ(errors, 1u) << r.out;
  for (const std::string& n : needles) EXPECT_NE(r.out.find(n), std::string::npos) << "missing '" << n << "' in: " << r.out;
}

struct ScratchDir {
  fs::path path;
  ScratchDir() {
    static int counter = 0;
    path = fs::temp_directory_path() / ("loom_cli_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~ScratchDir() { fs::remove_all(path); }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

// Four short documents, one with multi-byte characters: the corpus the end-to-end tests train on.
inline const std::vector<std::string> kDocs = {"The cat sat on the mat.\n", "A dog barked at the moon, twice!\n", "Cats and dogs: 42 of them.\n",
                                               "Unicode caf\xc3\xa9 na\xc3\xafve \xe2\x9c\x93\n"};

// `path`: the documents `copies` times over as JSON Lines {"text": ...}.
inline void write_docs_jsonl(const std::string& path, int copies) {
  std::ofstream jsonl(path);
  for (int i = 0; i < copies; ++i)
    for (const auto& doc : kDocs) jsonl << nlohmann::json({{"text", doc}}).dump() << "\n";
}

// d/corpus.txt (the documents 20 times, for `loom tokenizer train`) and d/docs.jsonl (10 times).
inline void write_corpus(const ScratchDir& d) {
  std::ofstream txt(d / "corpus.txt");
  for (int i = 0; i < 20; ++i)
    for (const auto& doc : kDocs) txt << doc;
  write_docs_jsonl(d / "docs.jsonl", 10);
}

// A shard of n pseudo-random tokens below vocab (a repeating pattern the model can learn).
inline void write_tokens(const std::string& path, int64_t n, uint32_t vocab, uint64_t seed) {
  std::vector<uint32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[size_t(i)] = (i % 7 == 0) ? uint32_t(uniform_at(seed, uint64_t(i)) * float(vocab)) : uint32_t((i * 13) % vocab);
  data::write_shard(path, t, false);
}

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The JSON object `loom eval` prints on stdout (the output holds its stderr too); a failure when
// the run failed or printed none.
inline nlohmann::json eval_result(const RunResult& r) {
  const size_t at = r.out.rfind("{\"task\"");
  if (r.code != 0 || at == std::string::npos) {
    ADD_FAILURE() << r.out;
    return nlohmann::json::object();
  }
  return nlohmann::json::parse(r.out.substr(at, r.out.find('\n', at) - at));
}

}  // namespace loom::testing
