// `loom export --model DIR [--adapter DIR] [--tokenizer T] --to gguf:FILE|gguf-lora:FILE [--type f32|f16|bf16|q8_0]`:
// a model (with --adapter: the adapter merged into it) and its tokenizer as one llama.cpp GGUF
// file, or (gguf-lora:) the adapter alone as a GGUF LoRA adapter that llama.cpp applies to the
// base's GGUF. Written atomically.
#include <filesystem>

#include "loom/cli/commands.h"
#include "loom/io/gguf_model.h"
#include "loom/io/gguf_vocab.h"
#include "loom/io/hf_checkpoint.h"
#include "loom/io/peft.h"
#include "loom/train/inference.h"

namespace loom::cli {

namespace {

namespace fs = std::filesystem;

// general.name: the model directory's name.
std::string model_name(const fs::path& dir) {
  const fs::path p = dir.lexically_normal();
  return (p.has_filename() ? p.filename() : p.parent_path().filename()).string();
}

}  // namespace

Command add_export(CLI::App& app) {
  auto* cmd = app.add_subcommand("export", "export a model and its tokenizer, or a LoRA adapter, as a llama.cpp GGUF file");
  struct Args {
    std::string model, adapter, tokenizer, to, type = "f32";
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--model", a->model, "the model: a Hugging Face directory or a Loom checkpoint")->required();
  cmd->add_option("--adapter", a->adapter, "a PEFT LoRA adapter directory: merged into the model (gguf:) or exported alone (gguf-lora:)");
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer file or directory (default: the model directory)");
  cmd->add_option("--to", a->to, "gguf:FILE (the model with its tokenizer) or gguf-lora:FILE (the adapter)")->required();
  cmd->add_option("--type", a->type, "tensor type of the weights: f32, f16, bf16 or q8_0 (norms and biases stay f32)")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0"}));
  return {cmd, [a](const std::shared_ptr<dist::Group>&) {
            const bool lora = a->to.starts_with("gguf-lora:");
            LOOM_CHECK(lora || a->to.starts_with("gguf:"), "export: --to '{}' must be gguf:FILE or gguf-lora:FILE", a->to);
            const fs::path out = a->to.substr(a->to.find(':') + 1);
            LOOM_CHECK(!out.empty(), "export: --to '{}' names no file", a->to);
            const io::gguf::TensorType type = io::gguf::type_from_name(a->type);
            const std::string name = model_name(a->model);
            io::GgufContent content;
            if (lora) {
              LOOM_CHECK(!a->adapter.empty(), "export: --to gguf-lora: needs --adapter DIR");
              io::ModelWeights w = io::load_hf(a->model);
              nn::TransformerLM model(w.config);
              model.load_state_dict(w.state);
              io::load_adapter(a->adapter, model);
              content = io::gguf_lora(w.config, model, io::read_adapter_config(a->adapter), type, name);
            } else {
              const train::InferenceModel m = train::load_for_inference(a->model, a->tokenizer, a->adapter);
              const models::ModelConfig& c = m.model->config();
              content = io::gguf_model(c, nn::merged_state_dict(*m.model), type, name);
              for (auto& kv : io::gguf_tokenizer(m.tok, m.tok_config, c.vocab_size)) content.metadata.push_back(std::move(kv));
            }
            io::gguf::write_file(out, content.metadata, content.tensors);
            fmt::print("wrote {} ({} tensors, {})\n", out.string(), content.tensors.size(), a->type);
            return 0;
          }};
}

}  // namespace loom::cli
