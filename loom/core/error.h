// Loom's single error type and the LOOM_CHECK macro that raises it.
// Every user-facing failure (bad shape, bad index, bad file) is a loom::Error whose message
// names the operation and the offending values; the CLI maps it to "error: <message>".
#pragma once

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <stdexcept>
#include <string>

namespace loom {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace loom

// LOOM_CHECK(cond, "op: shape {} does not match {}", a, b) throws loom::Error when cond is false.
#define LOOM_CHECK(cond, ...)                                \
  do {                                                       \
    if (!(cond)) [[unlikely]]                                \
      throw ::loom::Error(::fmt::format(__VA_ARGS__));       \
  } while (0)
