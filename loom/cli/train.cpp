// `loom train --config FILE.toml [--section.key=value ...] [--resume]`.
#include "loom/cli/commands.h"
#include "loom/train/trainer.h"

namespace loom::cli {

Command add_train(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "pre-train a model (every config key can be overridden as --section.key=value)");
  auto config = std::make_shared<std::string>();
  auto resume = std::make_shared<bool>(false);
  cmd->add_option("--config", *config, "TOML config file (optional: built-in defaults plus overrides)");
  cmd->add_flag("--resume", *resume, "continue from the newest complete checkpoint in checkpoint.dir");
  cmd->allow_extras();
  return {cmd, [cmd, config, resume](const std::shared_ptr<dist::Group>& world) {
    std::vector<std::string> overrides;
    for (const std::string& extra : cmd->remaining()) {
      LOOM_CHECK(extra.rfind("--", 0) == 0 && extra.find('=') != std::string::npos,
                 "train: unexpected argument '{}' (overrides look like --section.key=value)", extra);
      overrides.push_back(extra.substr(2));
    }
    train::Trainer trainer(train::load_config(*config, overrides), *resume, world);
    return trainer.run();
  }};
}

}  // namespace loom::cli
