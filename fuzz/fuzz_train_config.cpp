// Fuzzes the training config: TOML text, then NUL-separated `section.key=value` overrides (what
// `loom train --section.key=value` passes). A config it accepts is dumped as TOML (as a
// checkpoint records it) and must parse back to the same dump.
#include <vector>

#include "fuzz/harness.h"
#include "loom/train/config.h"

void loom::fuzz::one_input(std::string_view input) {
  auto [toml, rest] = split_at_nul(input);
  std::vector<std::string> overrides;
  while (!rest.empty()) {
    const auto [one, more] = split_at_nul(rest);
    overrides.emplace_back(one);
    rest = more;
  }
  const std::string dumped = train::to_toml(train::parse_config(std::string(toml), "fuzz.toml", overrides));
  const std::string again = must_accept([&] { return train::to_toml(train::parse_config(dumped, "dumped.toml", {})); });
  expect(again == dumped, "the config's TOML dump does not parse back to itself");
}
