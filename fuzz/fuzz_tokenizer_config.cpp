// Fuzzes tokenizer_config.json (bos/eos/pad tokens, add_bos_token, chat_template as a string or a
// list) and PEFT's adapter_config.json, split at the first NUL. An accepted tokenizer config with
// a chat template keeps it as given; an accepted adapter config has a positive rank and targets.
#include "fuzz/harness.h"
#include "loom/io/peft.h"
#include "loom/tokenizer/config.h"

void loom::fuzz::one_input(std::string_view input) {
  const auto [tokenizer_config, adapter_config] = split_at_nul(input);
  const std::filesystem::path file = write_file("tokenizer_config.json", tokenizer_config);
  try {
    const tokenizer::TokenizerConfig c = tokenizer::load_tokenizer_config(file.parent_path());
    expect(c.chat_template.empty() || tokenizer_config.find("chat_template") != std::string_view::npos, "a chat template from nowhere");
  } catch (const Error&) {
  }
  write_file("adapter_config.json", adapter_config);
  const nn::LoraConfig l = io::read_adapter_config(file.parent_path());
  expect(l.r > 0 && !l.targets.empty(), "an adapter config without a rank or targets");
}
