// `loom`: one command for training, data preparation, generation, evaluation, conversion, export to llama.cpp and tokenizers.
// Exit codes: 0 ok, 2 bad input (loom::Error: config, data, checkpoint, arguments), 3 a distributed
// failure or timeout, 1 a bug. Under mpirun every rank runs this; an error on one ends the job.
#include <cstdio>
#include <string>
#include <vector>

#include "loom/cli/commands.h"
#include "loom/core/error.h"
#include "loom/dist/world.h"

int main(int argc, char** argv) {
  CLI::App app{"loom: train and run large language models"};
  app.require_subcommand(1);
  std::vector<loom::cli::Command> commands;
  for (auto add : {loom::cli::add_train, loom::cli::add_sft, loom::cli::add_prepare, loom::cli::add_generate, loom::cli::add_eval, loom::cli::add_convert, loom::cli::add_tokenizer,
                    loom::cli::add_plot, loom::cli::add_merge, loom::cli::add_export})
    commands.push_back(add(app));
  std::string known;
  bool found = false;
  for (auto& c : commands) {
    known += (known.empty() ? "" : ", ") + c.app->get_name();
    found = found || (argc > 1 && c.app->get_name() == argv[1]);
  }
  if (argc > 1 && argv[1][0] != '-' && !found) {
    std::fprintf(stderr, "error: unknown command '%s' (commands: %s)\n", argv[1], known.c_str());
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  std::shared_ptr<loom::dist::Group> world;
  try {
    world = loom::dist::init(&argc, &argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 3;
  }
  int code = 1;
  auto run = [&] {
    for (auto& c : commands)
      if (c.app->parsed()) code = c.run(world);
  };
  // An error ends the whole job (every rank under mpirun), reported once with its rank.
  loom::dist::abort_on_error(run);
  world.reset();
  loom::dist::finalize();
  return code;
}
