// Chat templates: the Jinja subset that Hugging Face chat templates use, rendered byte for byte
// as Python's jinja2 renders them in transformers' sandbox (ImmutableSandboxedEnvironment with
// trim_blocks and lstrip_blocks, its tojson, raise_exception and strftime_now). What the subset
// lacks, a template's raise_exception, and a render past the limits of value.h are loom::Error
// naming the template line. See docs/chat.md.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace loom::chat {

struct Stmt;

class Template {
 public:
  // Parses `source`; a syntax error or an unsupported tag is a loom::Error.
  explicit Template(std::string source);
  // Renders with the keys of `context` (a JSON object) as variables. JSON objects become dicts
  // in their key order, as Python's json.loads makes them: use ordered_json to keep it.
  std::string render(const nlohmann::ordered_json& context) const;

 private:
  std::shared_ptr<const std::vector<Stmt>> body_;
};

// Applies a chat template as transformers' apply_chat_template(tokenize=False) does: variables
// messages, add_generation_prompt, bos_token, eos_token, tools and documents (None unless
// `extra` gives them), and the other keys of `extra` (enable_thinking, ...).
std::string apply_chat_template(const std::string& chat_template, const nlohmann::ordered_json& messages,
                                bool add_generation_prompt, const std::string& bos_token, const std::string& eos_token,
                                const nlohmann::ordered_json& extra = nlohmann::ordered_json::object());

}  // namespace loom::chat
