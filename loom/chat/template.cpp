// Template and apply_chat_template (see template.h): parse once, render each context inside a
// RenderScope of its own.
#include "loom/chat/template.h"

#include "loom/chat/jinja.h"
#include "loom/chat/pystr.h"

namespace loom::chat {

Template::Template(std::string source) {
  LOOM_CHECK(is_utf8(source), "chat template: the template is not valid UTF-8");
  body_ = std::make_shared<const std::vector<Stmt>>(parse(lex(source)));
}

std::string Template::render(const nlohmann::ordered_json& context) const {
  LOOM_CHECK(context.is_object(), "chat template: the context must be a JSON object, not {}", context.type_name());
  RenderScope scope;
  try {
    return chat::render(*body_, Value::from_json(context).dict());
  } catch (const Failure& e) {
    throw Error(fmt::format("chat template: {}", e.what()));
  }
}

std::string apply_chat_template(const std::string& chat_template, const nlohmann::ordered_json& messages,
                                bool add_generation_prompt, const std::string& bos_token, const std::string& eos_token,
                                const nlohmann::ordered_json& extra) {
  LOOM_CHECK(messages.is_array(), "apply_chat_template: messages must be a JSON array, not {}", messages.type_name());
  LOOM_CHECK(extra.is_object(), "apply_chat_template: extra must be a JSON object, not {}", extra.type_name());
  nlohmann::ordered_json context = {{"messages", messages},           {"tools", nullptr},
                                    {"documents", nullptr},           {"add_generation_prompt", add_generation_prompt},
                                    {"bos_token", bos_token},         {"eos_token", eos_token}};
  for (const auto& [key, value] : extra.items()) {
    LOOM_CHECK(key != "messages" && key != "add_generation_prompt" && key != "bos_token" && key != "eos_token",
               "apply_chat_template: extra cannot set '{}', which is an argument of its own", key);
    context[key] = value;
  }
  return Template(chat_template).render(context);
}

}  // namespace loom::chat
