// Fuzzes the chat-template lexer, parser and renderer: the input is a template, then NUL and a
// JSON object of variables (a conversation with tools when there is none). What renders must be
// valid UTF-8.
#include <nlohmann/json.hpp>

#include "fuzz/harness.h"
#include "loom/chat/pystr.h"
#include "loom/chat/template.h"

void loom::fuzz::one_input(std::string_view input) {
  static const auto kConversation = nlohmann::ordered_json::parse(R"({
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi {{ there }} é"},
                 {"role": "assistant", "content": "<think>\nhm\n</think>\n\nHello", "tool_calls": [
                   {"id": "abcdefghi", "type": "function", "function": {"name": "f", "arguments": {"a": [1, 2.5, null]}}}]},
                 {"role": "tool", "tool_call_id": "abcdefghi", "content": "ok"}, {"role": "user", "content": [{"type": "text", "text": "x"}]}],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "array"}}}}}],
    "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>", "enable_thinking": false})");
  const auto [source, variables] = split_at_nul(input);
  const chat::Template t{std::string(source)};
  auto context = nlohmann::ordered_json::parse(variables, nullptr, false);
  const std::string out = t.render(context.is_object() ? context : kConversation);
  expect(chat::is_utf8(out), "a render is not valid UTF-8");
}
