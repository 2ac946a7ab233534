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

// --quant nf4|int8 of generate and eval: the model's linears (all but the head) quantised before
// the adapter goes on, as quant.base did when a QLoRA adapter was trained.
inline void add_quant_option(CLI::App* cmd, std::string& quant) {
  cmd->add_option("--quant", quant, "nf4 or int8: quantise the model's linears but the head (the base of a QLoRA adapter)")
      ->check(CLI::IsMember({"nf4", "int8"}));
}

Command add_train(CLI::App& app);
Command add_sft(CLI::App& app);
Command add_prepare(CLI::App& app);
Command add_generate(CLI::App& app);
Command add_eval(CLI::App& app);
Command add_convert(CLI::App& app);
Command add_tokenizer(CLI::App& app);
Command add_plot(CLI::App& app);
Command add_merge(CLI::App& app);
Command add_export(CLI::App& app);

}  // namespace loom::cli
