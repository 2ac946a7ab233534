// `loom generate --model DIR [--adapter DIR] [--quant nf4|int8] --prompt TEXT [--max-tokens N --temperature T --top-k K --top-p P --seed S]`.
// DIR is a Hugging Face directory (config.json + safetensors) holding the tokenizer files too,
// or --tokenizer names them; a checkpoint's model.safetensors is read with --config. Generation
// stops at the tokenizer's EOS tokens (tokenizer_config.json, generation_config.json).
#include "loom/cli/commands.h"
#include "loom/train/generate.h"
#include "loom/train/inference.h"

namespace loom::cli {

Command add_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "generate text from a prompt (KV cache; greedy, temperature, top-k, top-p)");
  struct Args {
    std::string model, tokenizer, prompt, adapter, quant;
    train::GenerateOptions gen;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--model", a->model, "Hugging Face model directory (config.json + model.safetensors)")->required();
  cmd->add_option("--adapter", a->adapter, "a PEFT LoRA adapter directory applied to the model");
  add_quant_option(cmd, a->quant);
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer file or directory (default: the model directory)");
  cmd->add_option("--prompt", a->prompt, "prompt text")->required();
  cmd->add_option("--max-tokens", a->gen.max_new_tokens, "number of tokens to generate");
  cmd->add_option("--temperature", a->gen.temperature, "sampling temperature (0 = greedy)");
  cmd->add_option("--top-k", a->gen.top_k, "keep the k most likely tokens (0 = all)");
  cmd->add_option("--top-p", a->gen.top_p, "keep the smallest set of tokens whose probability reaches p");
  cmd->add_option("--seed", a->gen.seed, "sampling seed");
  return {cmd, [a](const std::shared_ptr<dist::Group>&) {
            const train::InferenceModel m = train::load_for_inference(a->model, a->tokenizer, a->adapter, a->quant);
            const std::vector<int32_t> ids = m.tok.encode(a->prompt, true);
            a->gen.stop_tokens = m.stop_tokens;
            fmt::print("{}{}\n", a->prompt, train::generate_text(*m.model, m.tok, std::vector<int64_t>(ids.begin(), ids.end()), a->gen));
            return 0;
          }};
}

}  // namespace loom::cli
