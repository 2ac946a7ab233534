// Helpers for the weight I/O tests: a scratch directory, raw file bytes, little-endian
// encoders, and an assertion that a call throws a loom::Error naming given fragments.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "loom/core/error.h"
#include "loom/core/tensor.h"

namespace loom::io_testing {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed with its contents at scope end.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "loom_io_XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("cannot create " + tmpl);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

inline void write_bytes(const fs::path& p, const std::string& bytes) { std::ofstream(p, std::ios::binary) << bytes; }
inline std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

template <typename T>
std::string le(T v) {
  std::string s(sizeof(T), '\0');
  std::memcpy(s.data(), &v, sizeof(T));
  return s;
}
template <typename T>
std::string le_all(std::initializer_list<T> vs) {
  std::string s;
  for (T v : vs) s += le(v);
  return s;
}

// A tensor's bytes, for exact (bitwise) comparisons.
inline std::string bytes_of(const Tensor& t) {
  EXPECT_TRUE(t.is_contiguous());
  return std::string(static_cast<const char*>(t.raw_data()), t.nbytes());
}

// Runs `python tests/io/<script> <args>` (args as the shell reads them); returns its exit status
// and appends its output (stderr too) to out.
inline int run_python(const std::string& script, const std::string& args, std::string& out) {
  const std::string cmd = std::string("'") + LOOM_PYTHON + "' '" + LOOM_SOURCE_DIR + "/tests/io/" + script + "' " + args + " 2>&1";
  std::FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  return ::pclose(pipe);
}
inline bool python_available() { return fs::exists(LOOM_PYTHON); }

// Runs f, expecting a loom::Error whose message contains every fragment.
template <typename F>
void expect_error(F&& f, const std::vector<std::string>& fragments) {
  try {
    f();
    ADD_FAILURE() << "expected a loom::Error";
  } catch (const Error& e) {
    for (const std::string& frag : fragments)
      EXPECT_NE(std::string(e.what()).find(frag), std::string::npos) << e.what() << "\n  lacks: " << frag;
  }
}

}  // namespace loom::io_testing
