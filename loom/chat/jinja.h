// The Jinja subset's syntax: the tokens of the lexer (jinja_lex.cpp), the tree the parser builds
// (jinja_parse.cpp) and the renderer that walks it (jinja_eval.cpp). Internal to loom/chat.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "loom/chat/value.h"

namespace loom::chat {

struct Token {
  enum class Type : uint8_t { text, variable_begin, variable_end, block_begin, block_end, name, string, integer, floating, op, eof };
  Type type = Type::eof;
  std::string text;  // text, name, string value, operator
  int64_t integer = 0;
  double floating = 0;
  int line = 1;
};

// Splits a template into tokens as jinja2's lexer does with trim_blocks and lstrip_blocks:
// newlines normalised, one trailing newline dropped, comments dropped, whitespace control
// applied to the text tokens. `source` is valid UTF-8.
std::vector<Token> lex(std::string_view source);

// "chat template: line N: message".
[[noreturn]] void syntax_error(int line, const std::string& message);

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Type : uint8_t {
    literal,  // value
    name,     // name
    list,     // args: items
    tuple,    // args: items
    dict,     // args: key, value, key, value, ...
    attr,     // args[0].name
    item,     // args[0][args[1]]
    slice,    // args[0][args[1]:args[2]:args[3]], absent bounds null
    call,     // args[0](args[1:], kwargs)
    filter,   // args[0] | name(args[1:], kwargs); args[0] is null in {% set x | f %}
    test,     // args[0] is name(args[1:], kwargs)
    unary,    // name (- or +) args[0]
    binary,   // args[0] name args[1]: + - * / // % **
    logic,    // args[0] name args[1]: and, or
    not_,     // not args[0]
    compare,  // args[0] ops[0] args[1] ops[1] args[2] ... (==, !=, <, <=, >, >=, in, notin)
    concat,   // args[0] ~ args[1] ~ ...
    cond,     // args[1] if args[0] else args[2] (null when absent)
  };
  Type type = Type::literal;
  int line = 0;
  int height = 1;  // of the tree below it, bounded so that nothing recurses too deep
  Value value;
  std::string name;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
};

// What {% set %} and {% for %} assign to.
struct Target {
  std::string name;           // a variable, or the namespace of name.attr
  std::string attr;           // {% set ns.attr = ... %}
  std::vector<Target> items;  // a tuple: {% for key, value in ... %}
  bool tuple = false;
};

struct Stmt {
  enum class Type : uint8_t {
    text,       // text
    output,     // {{ exprs[0] }}, {% print exprs... %}
    if_,        // exprs[0]: the condition; an elif is an if alone in else_body
    for_,       // exprs[0]: the iterable, exprs[1]: the filter (null when none); uses_loop
    set,        // target = exprs[0]
    set_block,  // target = body rendered, through the filters in exprs
    macro,      // name: text; params; exprs: the defaults (null when none)
    break_,
    continue_,
    scope,      // {% generation %}: body in a scope of its own
  };
  Type type = Type::text;
  int line = 0;
  std::string text;
  Target target;
  std::vector<ExprPtr> exprs;
  std::vector<std::string> params;
  bool catch_varargs = false;  // a macro whose body reads varargs / kwargs takes extra arguments
  bool catch_kwargs = false;
  bool uses_loop = false;      // a for loop whose body reads `loop` (else it is not made)
  std::vector<Stmt> body;
  std::vector<Stmt> else_body;
};

// Expressions and statements nest at most this deep.
inline constexpr int kMaxNesting = 100;

// The template's statements; fails with a syntax_error naming the line.
std::vector<Stmt> parse(std::vector<Token> tokens);

// Renders parsed statements with `context` as the template's variables (over the globals).
std::string render(const std::vector<Stmt>& body, const Dict& context);

}  // namespace loom::chat
