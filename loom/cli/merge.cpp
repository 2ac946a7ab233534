// `loom merge --base hf:DIR --adapter DIR --output DIR [--overwrite]`: a plain Hugging Face
// directory whose linear weights are W + s·B·A of the adapter's LoRA modules, with the base's
// tokenizer and generation files beside it.
#include <filesystem>

#include "loom/cli/commands.h"
#include "loom/io/hf_checkpoint.h"
#include "loom/io/peft.h"
#include "loom/tokenizer/config.h"

namespace loom::cli {

Command add_merge(CLI::App& app) {
  auto* cmd = app.add_subcommand("merge", "merge a LoRA adapter into its base model, writing a plain Hugging Face directory");
  struct Args {
    std::string base, adapter, output;
    bool overwrite = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--base", a->base, "hf:DIR, the base model (a Hugging Face directory or a Loom checkpoint)")->required();
  cmd->add_option("--adapter", a->adapter, "a PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors)")->required();
  cmd->add_option("--output", a->output, "the merged Hugging Face directory to write")->required();
  cmd->add_flag("--overwrite", a->overwrite, "replace an existing output");
  return {cmd, [a](const std::shared_ptr<dist::Group>&) {
            LOOM_CHECK(a->base.starts_with("hf:"), "merge: --base '{}' must be hf:DIR", a->base);
            const std::filesystem::path base = a->base.substr(3);
            io::ModelWeights w = io::load_hf(base);
            nn::TransformerLM model(w.config);
            model.load_state_dict(w.state);
            io::load_adapter(a->adapter, model);
            io::save_hf(a->output, w.config, nn::merged_state_dict(model), a->overwrite);
            tokenizer::copy_tokenizer_files(base, a->output);
            fmt::print("merged {} into {} -> {}\n", a->adapter, base.string(), a->output);
            return 0;
          }};
}

}  // namespace loom::cli
