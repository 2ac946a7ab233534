// `loom generate --model DIR [--adapter DIR] --prompt TEXT [--max-tokens N --temperature T --top-k K --top-p P --seed S]`.
// DIR is a Hugging Face directory (config.json + safetensors) holding the tokenizer files too,
// or --tokenizer names them; a checkpoint's model.safetensors is read with --config. Generation
// stops at the tokenizer's EOS tokens (tokenizer_config.json, generation_config.json).
#include "loom/cli/commands.h"
#include "loom/io/hf_checkpoint.h"
#include "loom/io/peft.h"
#include "loom/tokenizer/bpe.h"
#include "loom/tokenizer/config.h"
#include "loom/train/generate.h"

namespace loom::cli {

Command add_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "generate text from a prompt (KV cache; greedy, temperature, top-k, top-p)");
  struct Args {
    std::string model, tokenizer, prompt, adapter;
    train::GenerateOptions gen;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--model", a->model, "Hugging Face model directory (config.json + model.safetensors)")->required();
  cmd->add_option("--adapter", a->adapter, "a PEFT LoRA adapter directory applied to the model");
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer file or directory (default: the model directory)");
  cmd->add_option("--prompt", a->prompt, "prompt text")->required();
  cmd->add_option("--max-tokens", a->gen.max_new_tokens, "number of tokens to generate");
  cmd->add_option("--temperature", a->gen.temperature, "sampling temperature (0 = greedy)");
  cmd->add_option("--top-k", a->gen.top_k, "keep the k most likely tokens (0 = all)");
  cmd->add_option("--top-p", a->gen.top_p, "keep the smallest set of tokens whose probability reaches p");
  cmd->add_option("--seed", a->gen.seed, "sampling seed");
  return {cmd, [a](const std::shared_ptr<dist::Group>&) {
            io::ModelWeights w = io::load_hf(a->model);
            nn::TransformerLM model(w.config);
            model.load_state_dict(w.state);
            if (!a->adapter.empty()) io::load_adapter(a->adapter, model);
            const std::string tok_path = a->tokenizer.empty() ? a->model : a->tokenizer;
            const tokenizer::Tokenizer tok = tokenizer::Tokenizer::load(tok_path);
            const tokenizer::TokenizerConfig tcfg = tokenizer::load_tokenizer_config(tok_path);
            std::vector<int32_t> ids = tok.encode(a->prompt, true);
            for (int32_t id : tokenizer::stop_tokens(tok, tcfg, a->model)) a->gen.stop_tokens.push_back(id);
            std::vector<int64_t> prompt(ids.begin(), ids.end());
            std::vector<int64_t> out = train::generate(model, prompt, a->gen);
            if (!out.empty() && std::ranges::find(a->gen.stop_tokens, out.back()) != a->gen.stop_tokens.end())
              out.pop_back();  // the end marker is not text
            std::vector<int32_t> out32(out.begin(), out.end());
            fmt::print("{}{}\n", a->prompt, tok.decode(out32));
            return 0;
          }};
}

}  // namespace loom::cli
