// The `loom` subcommands: each file in loom/cli registers one on the CLI11 app and runs it.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

#include "loom/core/error.h"
#include "loom/dist/group.h"

namespace loom::cli {

// A registered subcommand and what runs when it is chosen (returns the exit code). world is
// the job's ranks (one rank without mpirun).
struct Command {
  CLI::App* app;
  std::function<int(const std::shared_ptr<dist::Group>& world)> run;
};

Command add_train(CLI::App& app);
Command add_sft(CLI::App& app);
Command add_prepare(CLI::App& app);
Command add_generate(CLI::App& app);
Command add_eval(CLI::App& app);
Command add_convert(CLI::App& app);
Command add_tokenizer(CLI::App& app);
Command add_plot(CLI::App& app);
Command add_merge(CLI::App& app);

}  // namespace loom::cli
