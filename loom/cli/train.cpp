// `loom train|sft --config FILE.toml [--section.key=value ...] [--resume]`: the same trainer, on
// token shards or on fine-tuning examples.
#include "loom/cli/commands.h"
#include "loom/train/trainer.h"

namespace loom::cli {

namespace {

Command add_trainer(CLI::App& app, const std::string& name, const std::string& what, train::Task task) {
  auto* cmd = app.add_subcommand(name, what + " (every config key can be overridden as --section.key=value)");
  auto config = std::make_shared<std::string>();
  auto resume = std::make_shared<bool>(false);
  cmd->add_option("--config", *config, "TOML config file (optional: built-in defaults plus overrides)");
  cmd->add_flag("--resume", *resume, "continue from the newest complete checkpoint in checkpoint.dir");
  cmd->allow_extras();
  return {cmd, [cmd, config, resume, name, task](const std::shared_ptr<dist::Group>& world) {
    std::vector<std::string> overrides;
    for (const std::string& extra : cmd->remaining()) {
      LOOM_CHECK(extra.rfind("--", 0) == 0 && extra.find('=') != std::string::npos,
                 "{}: unexpected argument '{}' (overrides look like --section.key=value)", name, extra);
      overrides.push_back(extra.substr(2));
    }
    train::Trainer trainer(train::load_config(*config, overrides), *resume, world, task);
    return trainer.run();
  }};
}

}  // namespace

Command add_train(CLI::App& app) { return add_trainer(app, "train", "pre-train a model on token shards", train::Task::pretrain); }

Command add_sft(CLI::App& app) {
  return add_trainer(app, "sft", "fine-tune a model on JSON Lines examples (messages, prompt/completion or text)", train::Task::sft);
}

}  // namespace loom::cli
