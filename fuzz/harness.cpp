// libFuzzer's entry point around each target's one_input(), and the scratch files.
#include "fuzz/harness.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>

namespace loom::fuzz {

namespace fs = std::filesystem;

namespace {

struct ScratchDir {
  fs::path path;
  ScratchDir() {
    std::string tmpl = (fs::exists("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path()) / "loom-fuzz-XXXXXX";
    if (!::mkdtemp(tmpl.data())) {
      std::perror("fuzz: mkdtemp");
      std::abort();
    }
    path = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

}  // namespace

fs::path write_file(const std::string& name, std::string_view bytes) {
  static const ScratchDir dir;
  const fs::path p = dir.path / name;
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  out.close();
  expect(out.good(), "writing the scratch file failed");
  return p;
}

std::pair<std::string_view, std::string_view> split_at_nul(std::string_view input) {
  const size_t nul = input.find('\0');
  if (nul == std::string_view::npos) return {input, {}};
  return {input.substr(0, nul), input.substr(nul + 1)};
}

void fail(const std::string& what) {
  std::fprintf(stderr, "fuzz: finding: %s\n", what.c_str());
  std::abort();
}

}  // namespace loom::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    loom::fuzz::one_input(std::string_view(reinterpret_cast<const char*>(data), size));
  } catch (const loom::Error&) {
    // rejected with a message: what bad input should get
  }
  return 0;
}
