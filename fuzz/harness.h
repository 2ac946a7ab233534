// What every libFuzzer target shares. A target defines loom::fuzz::one_input(); the input
// passes when its parser returns or throws loom::Error (the way bad input is rejected).
// Anything else — another exception, a crash, a sanitizer report, a hang, an allocation over
// libFuzzer's limit, or a failed expect() — is a finding.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <utility>

#include "loom/core/error.h"

namespace loom::fuzz {

// Parses one input; defined once per target.
void one_input(std::string_view input);

// Writes bytes to <this process's scratch directory>/name (replacing it) and returns the path,
// for parsers that only take a path. The directory is removed when the process exits.
std::filesystem::path write_file(const std::string& name, std::string_view bytes);

// Splits at the first NUL: the part before and the part after (empty when there is none).
// Targets that take two files, or a file and arguments, read them this way.
std::pair<std::string_view, std::string_view> split_at_nul(std::string_view input);

// A finding: prints `what` and aborts.
[[noreturn]] void fail(const std::string& what);
// An invariant of what a parser accepted: a finding when it does not hold.
inline void expect(bool ok, const char* what) {
  if (!ok) fail(what);
}
// Runs f, which must not throw loom::Error: what follows from an accepted input (writing it back
// and reading that) has to work.
template <typename F>
decltype(auto) must_accept(F&& f) {
  try {
    return f();
  } catch (const Error& e) {
    fail(e.what());
  }
}

}  // namespace loom::fuzz
