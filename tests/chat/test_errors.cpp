// What the subset refuses and what no template may do: unsupported constructs are one-line
// errors naming the construct and the line; bad input and runaway templates (deep nesting,
// endless loops, huge output, reference cycles) end in loom::Error, never a crash or a hang.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "loom/chat/template.h"
#include "loom/core/error.h"

namespace loom::chat {
namespace {

using Json = nlohmann::ordered_json;

std::string render_error(const std::string& source, const Json& context = {{"role", "robot"}}) {
  try {
    Template(source).render(context);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Each template with the error it must give.
void expect_errors(const std::vector<std::pair<std::string, std::string>>& cases) {
  for (const auto& [source, error] : cases) EXPECT_EQ(render_error(source), error) << source;
}

TEST(ChatTemplateErrors, UnsupportedConstructsNameThemselvesAndTheLine) {
  expect_errors({
      {"a\nb\n{% raw %}x{% endraw %}", "chat template: line 3: the tag 'raw' is not supported"},
      {"{% with a = 1 %}{{ a }}{% endwith %}", "chat template: line 1: the tag 'with' is not supported"},
      {"\n{{ 'a b'|wordcount }}", "chat template: line 2: the filter wordcount is not supported"},
      {"{{ 'x'|nosuch }}", "chat template: line 1: no filter named 'nosuch'"},
      {"{{ 'é' is lower }}", "chat template: line 1: the lower and upper tests of non-ASCII letters are not supported"},
      {"{{ 'x'.zfill(3) }}", "chat template: line 1: the attribute zfill of str is not supported"},
      {"{{ '%s' % 1 }}", "chat template: line 1: string formatting with % is not supported"},
      {"{{ 10 ** 20 }}", "chat template: line 1: integer overflow (Python's integers are unbounded; Loom's are 64-bit)"},
      {"{% for x in xs recursive %}{% endfor %}", "chat template: line 1: recursive for loops are not supported"},
      {"{{ f(*xs) }}", "chat template: line 1: *args and **kwargs in calls are not supported"},
      {"{{ {1: 2} }}", "chat template: line 1: dict keys other than strings are not supported"},
  });
}

TEST(ChatTemplateErrors, RaiseExceptionCarriesTheTemplatesMessage) {
  expect_errors({{"ok\n{% if true %}{{ raise_exception('Bad role: ' ~ role) }}{% endif %}",
                  "chat template: line 2: raise_exception: Bad role: robot"}});
}

TEST(ChatTemplateErrors, SyntaxErrors) {
  expect_errors({
      {"{% if x %}\nnever closed",
       "chat template: line 2: unexpected end of template: expected 'elif' or 'else' or 'endif' to close the 'if' of line 1"},
      {"{{ 'open", "chat template: line 1: unexpected char \"'\""},
      {"{# open", "chat template: line 1: missing end of comment tag"},
      {"{{ (1 }}", "chat template: line 1: unexpected '}', expected ')'"},
      {"{{ 1", "chat template: line 1: unexpected end of template: missing '}}'"},
      {"{% endfor %}", "chat template: line 1: unknown tag 'endfor'"},
      {"{% break %}", "chat template: line 1: 'break' outside a for loop"},
  });
}

TEST(ChatTemplateErrors, BadInput) {
  EXPECT_EQ(render_error("\xff"), "chat template: the template is not valid UTF-8");
  EXPECT_THROW(Template("{{ x }}").render(Json::array()), Error);
  EXPECT_THROW(apply_chat_template("x", Json::object(), false, "", ""), Error);
  EXPECT_THROW(apply_chat_template("x", Json::array(), false, "", "", {{"messages", Json::array()}}), Error);
}

TEST(ChatTemplateErrors, RunawayTemplatesStop) {
  EXPECT_NE(render_error("{{ " + std::string(300, '(') + "1" + std::string(300, ')') + " }}").find("nests more than"), std::string::npos);
  std::string filters;  // a chain the parser builds without recursing
  for (int i = 0; i < 400; ++i) filters += "|trim";
  EXPECT_NE(render_error("{{ x" + filters + " }}").find("nests more than"), std::string::npos);
  EXPECT_NE(render_error("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}").find("nests more than"), std::string::npos);
  EXPECT_NE(render_error("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}").find("steps to render"),
            std::string::npos);
  EXPECT_NE(render_error("{% for i in range(100000) %}{{ 'x' * 10000 }}{% endfor %}").find("MiB of text"), std::string::npos);
  EXPECT_NE(render_error("{{ 'x' * 1000000000000 }}").find("MiB of text"), std::string::npos);
  EXPECT_NE(render_error("{% set ns = namespace(l=[]) %}{% for i in range(1000) %}{% set ns.l = [ns.l] %}{% endfor %}").find("nested more than"),
            std::string::npos);
  // A namespace that holds itself renders (and is freed at the end); printing it stops.
  EXPECT_EQ(Template("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns.me.me.me is defined }}").render(Json::object()), "True");
  EXPECT_NE(render_error("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}").find("nested more than"), std::string::npos);
}

// A template is parsed once and can be rendered many times, with different contexts.
TEST(ChatTemplate, RendersManyContexts) {
  const Template t("{% for m in messages %}{{ m.role }}:{{ m.content }}\n{% endfor %}");
  EXPECT_EQ(t.render({{"messages", Json::parse(R"([{"role": "user", "content": "a"}])")}}), "user:a\n");
  EXPECT_EQ(t.render({{"messages", Json::array()}}), "");
}

}  // namespace
}  // namespace loom::chat
