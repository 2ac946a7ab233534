// The parser of the Jinja subset: jinja2's grammar (parser.py) and precedence, over the tokens of
// jinja_lex.cpp, into the tree of jinja.h. Tags: for (with else, a filter, loop), if/elif/else,
// set (also ns.attr and blocks), macro, print, break/continue and transformers' generation.
#include <algorithm>

#include "loom/chat/builtins.h"
#include "loom/chat/jinja.h"

namespace loom::chat {

namespace {

using T = Token::Type;
using Tags = std::initializer_list<std::string_view>;

constexpr std::string_view kCompareOps[] = {"==", "!=", "<", "<=", ">", ">="};
constexpr std::string_view kConstants[] = {"true", "True", "false", "False", "none", "None"};
// jinja2's own tags and those of its extensions that this subset does not support.
constexpr std::string_view kUnsupportedTags[] = {"block", "extends", "include", "import", "from", "with", "autoescape",
                                                 "call", "filter", "raw", "do", "trans"};

std::string describe(const Token& t) {
  switch (t.type) {
    case T::text: return "template data";
    case T::variable_begin: return "'{{'";
    case T::variable_end: return "end of print statement";
    case T::block_begin: return "'{%'";
    case T::block_end: return "end of statement block";
    case T::string: return "string";
    case T::integer: return "integer";
    case T::floating: return "float";
    case T::eof: return "end of template";
    default: return "'" + t.text + "'";
  }
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  std::vector<Stmt> run() { return parse_body({}, "", 0); }

 private:
  // Counts nesting on the parser's recursion so that it stays shallow.
  struct Nest {
    explicit Nest(Parser& p) : p_(p) {
      if (++p_.depth_ > kMaxNesting) p_.error(fmt::format("the template nests more than {} levels deep", kMaxNesting));
    }
    ~Nest() { --p_.depth_; }
    Parser& p_;
  };

  const Token& cur() const { return t_[pos_]; }
  const Token& peek() const { return t_[std::min(pos_ + 1, t_.size() - 1)]; }
  void advance() {
    if (pos_ + 1 < t_.size()) ++pos_;
  }
  bool is_op(std::string_view o) const { return cur().type == T::op && cur().text == o; }
  bool is_name(std::string_view n) const { return cur().type == T::name && cur().text == n; }
  bool skip_op(std::string_view o) { return is_op(o) ? (advance(), true) : false; }
  bool skip_name(std::string_view n) { return is_name(n) ? (advance(), true) : false; }
  [[noreturn]] void error(const std::string& message) const { syntax_error(cur().line, message); }
  void expect_op(std::string_view o) {
    if (!skip_op(o)) error(fmt::format("expected '{}', got {}", o, describe(cur())));
  }
  void expect(T type, std::string_view what) {
    if (cur().type != type) error(fmt::format("expected {}, got {}", what, describe(cur())));
    advance();
  }
  std::string expect_name() {
    if (cur().type != T::name) error(fmt::format("expected a name, got {}", describe(cur())));
    std::string n = cur().text;
    advance();
    return n;
  }
  // A filter's or test's name: name(.name)*.
  std::string dotted_name() {
    std::string name = expect_name();
    while (skip_op(".")) {
      name += '.';
      name += expect_name();
    }
    return name;
  }
  bool tuple_end(std::string_view extra) const {
    return cur().type == T::variable_end || cur().type == T::block_end || is_op(")") || (!extra.empty() && is_name(extra));
  }

  ExprPtr node(Expr::Type type, int line, std::vector<ExprPtr> args = {}, std::string name = {}) {
    auto e = std::make_unique<Expr>();
    e->type = type;
    e->line = line;
    e->name = std::move(name);
    e->args = std::move(args);
    return measured(std::move(e));
  }

  // Sets e's height; a tree too deep to walk safely is an error.
  ExprPtr measured(ExprPtr e) {
    int h = 0;
    for (const auto& a : e->args)
      if (a) h = std::max(h, a->height);
    for (const auto& [k, a] : e->kwargs) h = std::max(h, a->height);
    e->height = h + 1;
    if (e->height > kMaxNesting) syntax_error(e->line, fmt::format("an expression nests more than {} levels deep", kMaxNesting));
    return e;
  }

  ExprPtr literal(Value v, int line) {
    auto e = node(Expr::Type::literal, line);
    e->value = std::move(v);
    return e;
  }

  // Statements up to one of `end_tags` (then the current token is that tag's name) or the end.
  std::vector<Stmt> parse_body(Tags end_tags, std::string_view open_tag, int open_line) {
    std::vector<Stmt> body;
    while (true) {
      const int line = cur().line;
      if (cur().type == T::text) {
        Stmt s;
        s.line = line;
        s.text = cur().text;
        body.push_back(std::move(s));
        advance();
      } else if (cur().type == T::variable_begin) {
        advance();
        Stmt s;
        s.type = Stmt::Type::output;
        s.line = line;
        s.exprs.push_back(parse_tuple(true, "", false));
        expect(T::variable_end, "end of print statement");
        body.push_back(std::move(s));
      } else if (cur().type == T::block_begin) {
        advance();
        if (cur().type == T::name && std::find(end_tags.begin(), end_tags.end(), cur().text) != end_tags.end()) return body;
        body.push_back(parse_statement());
        expect(T::block_end, "end of statement block");
      } else if (cur().type == T::eof) {
        if (end_tags.size() == 0) return body;
        std::string wanted;
        for (std::string_view tag : end_tags) wanted += (wanted.empty() ? "'" : " or '") + std::string(tag) + "'";
        syntax_error(line, fmt::format("unexpected end of template: expected {} to close the '{}' of line {}", wanted, open_tag, open_line));
      } else {
        error(fmt::format("unexpected {}", describe(cur())));
      }
    }
  }

  // The end of a tag's opening and its body, up to one of `end_tags` (consumed when drop_end).
  std::vector<Stmt> parse_block(Tags end_tags, bool drop_end, std::string_view tag, int line) {
    skip_op(":");
    expect(T::block_end, "end of statement block");
    std::vector<Stmt> body = parse_body(end_tags, tag, line);
    if (drop_end) advance();
    return body;
  }

  // A statement of `type` whose tag name is the current token (consumed).
  Stmt start(Stmt::Type type, int line) {
    advance();
    Stmt s;
    s.type = type;
    s.line = line;
    return s;
  }

  Stmt parse_statement() {
    Nest nest(*this);
    if (cur().type != T::name) error("tag name expected");
    const std::string tag = cur().text;
    const int line = cur().line;
    if (tag == "for") return parse_for(line);
    if (tag == "if") return parse_if(line);
    if (tag == "set") return parse_set(line);
    if (tag == "macro") return parse_macro(line);
    Stmt s = start(Stmt::Type::output, line);
    if (tag == "print") {
      while (cur().type != T::block_end) {
        if (!s.exprs.empty()) expect_op(",");
        s.exprs.push_back(parse_expression(true));
      }
    } else if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) syntax_error(line, fmt::format("'{}' outside a for loop", tag));
      s.type = tag == "break" ? Stmt::Type::break_ : Stmt::Type::continue_;
    } else if (tag == "generation") {
      s.type = Stmt::Type::scope;
      s.body = parse_block({"endgeneration"}, true, tag, line);
    } else if (std::find(std::begin(kUnsupportedTags), std::end(kUnsupportedTags), tag) != std::end(kUnsupportedTags)) {
      syntax_error(line, fmt::format("the tag '{}' is not supported", tag));
    } else {
      syntax_error(line, fmt::format("unknown tag '{}'", tag));
    }
    return s;
  }

  Stmt parse_for(int line) {
    Stmt s = start(Stmt::Type::for_, line);
    s.target = parse_target(false, "in");
    if (!skip_name("in")) error(fmt::format("expected 'in', got {}", describe(cur())));
    s.exprs.push_back(parse_tuple(false, "recursive", false));
    s.exprs.push_back(skip_name("if") ? parse_expression(true) : nullptr);
    if (is_name("recursive")) error("recursive for loops are not supported");
    ++loop_depth_;
    loops_.push_back(&s);
    s.body = parse_block({"endfor", "else"}, false, "for", line);
    loops_.pop_back();
    --loop_depth_;
    const bool has_else = is_name("else");
    advance();
    if (has_else) s.else_body = parse_block({"endfor"}, true, "for", line);
    return s;
  }

  // {% if %} or {% elif %} (an if alone in the else branch of the one before).
  Stmt parse_if(int line) {
    Nest nest(*this);
    Stmt s = start(Stmt::Type::if_, line);
    s.exprs.push_back(parse_tuple(false, "", false));
    s.body = parse_block({"elif", "else", "endif"}, false, "if", line);
    if (is_name("elif")) {
      s.else_body.push_back(parse_if(cur().line));
    } else if (skip_name("else")) {
      s.else_body = parse_block({"endif"}, true, "if", line);
    } else {
      advance();
    }
    return s;
  }

  Stmt parse_set(int line) {
    Stmt s = start(Stmt::Type::set, line);
    s.target = parse_target(true, "");
    if (skip_op("=")) {
      s.exprs.push_back(parse_tuple(true, "", false));
      return s;
    }
    s.type = Stmt::Type::set_block;
    while (is_op("|")) s.exprs.push_back(parse_filter(nullptr));
    s.body = parse_block({"endset"}, true, "set", line);
    return s;
  }

  Stmt parse_macro(int line) {
    Stmt s = start(Stmt::Type::macro, line);
    s.text = expect_name();
    expect_op("(");
    while (!is_op(")")) {
      if (!s.params.empty()) expect_op(",");
      s.params.push_back(expect_name());
      s.exprs.push_back(skip_op("=") ? parse_expression(true) : nullptr);
      if (!s.exprs.back() && s.exprs.size() > 1 && s.exprs[s.exprs.size() - 2]) error("non-default argument follows default argument");
    }
    advance();
    macros_.push_back(&s);
    const int loops = std::exchange(loop_depth_, 0);
    s.body = parse_block({"endmacro"}, true, "macro", line);
    loop_depth_ = loops;
    macros_.pop_back();
    return s;
  }

  // A name, a tuple of targets, or (with_namespace) ns.attr.
  Target parse_target(bool with_namespace, std::string_view end_name) {
    Target t;
    if (with_namespace && cur().type == T::name && peek().type == T::op && peek().text == ".") {
      t.name = expect_name();
      advance();
      t.attr = expect_name();
      return t;
    }
    while (true) {
      if (!t.items.empty()) expect_op(",");
      if (tuple_end(end_name)) break;
      if (skip_op("(")) {
        Nest nest(*this);
        t.items.push_back(parse_target(false, ""));
        expect_op(")");
      } else {
        if (cur().type != T::name || std::find(std::begin(kConstants), std::end(kConstants), cur().text) != std::end(kConstants))
          error(fmt::format("cannot assign to {}", describe(cur())));
        Target name;
        name.name = expect_name();
        t.items.push_back(std::move(name));
      }
      if (is_op(",")) t.tuple = true;
      else break;
    }
    if (t.items.empty()) error(fmt::format("expected a name to assign to, got {}", describe(cur())));
    return t.tuple ? t : std::move(t.items[0]);
  }

  // Expressions separated by commas: a tuple when there is a comma (or explicit empty parentheses).
  ExprPtr parse_tuple(bool with_condexpr, std::string_view extra_end, bool explicit_parentheses) {
    int line = cur().line;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (tuple_end(extra_end)) break;
      items.push_back(parse_expression(with_condexpr));
      if (!is_op(",")) break;
      is_tuple = true;
      line = cur().line;
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parentheses) error(fmt::format("expected an expression, got {}", describe(cur())));
    }
    return node(Expr::Type::tuple, line, std::move(items));
  }

  ExprPtr parse_expression(bool with_condexpr) {
    Nest nest(*this);
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
    int line = cur().line;
    ExprPtr e = parse_or();
    while (skip_name("if")) {
      ExprPtr test = parse_or();
      ExprPtr otherwise = skip_name("else") ? parse_expression(true) : nullptr;
      std::vector<ExprPtr> args;
      args.push_back(std::move(test));
      args.push_back(std::move(e));
      args.push_back(std::move(otherwise));
      e = node(Expr::Type::cond, line, std::move(args));
      line = cur().line;
    }
    return e;
  }

  // Left-associative operators `ops` (names for and/or) between operands parsed by `next`.
  ExprPtr parse_binary(Expr::Type type, std::initializer_list<std::string_view> ops, ExprPtr (Parser::*next)()) {
    const int line = cur().line;
    ExprPtr e = (this->*next)();
    while (true) {
      const auto op = std::find_if(ops.begin(), ops.end(), [&](std::string_view o) { return is_op(o) || is_name(o); });
      if (op == ops.end()) return e;
      advance();
      std::vector<ExprPtr> args;
      args.push_back(std::move(e));
      args.push_back((this->*next)());
      e = node(type, line, std::move(args), std::string(*op));
    }
  }

  ExprPtr parse_or() { return parse_binary(Expr::Type::logic, {"or"}, &Parser::parse_and); }
  ExprPtr parse_and() { return parse_binary(Expr::Type::logic, {"and"}, &Parser::parse_not); }

  ExprPtr parse_not() {
    if (!is_name("not")) return parse_compare();
    Nest nest(*this);
    const int line = cur().line;
    advance();
    std::vector<ExprPtr> args;
    args.push_back(parse_not());
    return node(Expr::Type::not_, line, std::move(args));
  }

  ExprPtr parse_compare() {
    const int line = cur().line;
    std::vector<ExprPtr> args;
    std::vector<std::string> ops;
    args.push_back(parse_math1());
    while (true) {
      if (cur().type == T::op && std::find(std::begin(kCompareOps), std::end(kCompareOps), cur().text) != std::end(kCompareOps)) {
        ops.push_back(cur().text);
        advance();
      } else if (skip_name("in")) {
        ops.push_back("in");
      } else if (is_name("not") && peek().type == T::name && peek().text == "in") {
        advance();
        advance();
        ops.push_back("notin");
      } else {
        break;
      }
      args.push_back(parse_math1());
    }
    if (ops.empty()) return std::move(args[0]);
    ExprPtr e = node(Expr::Type::compare, line, std::move(args));
    e->ops = std::move(ops);
    return e;
  }

  ExprPtr parse_math1() { return parse_binary(Expr::Type::binary, {"+", "-"}, &Parser::parse_concat); }

  ExprPtr parse_concat() {
    const int line = cur().line;
    std::vector<ExprPtr> args;
    args.push_back(parse_math2());
    while (skip_op("~")) args.push_back(parse_math2());
    return args.size() == 1 ? std::move(args[0]) : node(Expr::Type::concat, line, std::move(args));
  }

  ExprPtr parse_math2() { return parse_binary(Expr::Type::binary, {"*", "/", "//", "%"}, &Parser::parse_pow); }
  ExprPtr parse_pow() { return parse_binary(Expr::Type::binary, {"**"}, &Parser::parse_operand); }
  ExprPtr parse_operand() { return parse_unary(true); }

  ExprPtr parse_unary(bool with_filter) {
    Nest nest(*this);
    const int line = cur().line;
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      std::string op = cur().text;
      advance();
      std::vector<ExprPtr> args;
      args.push_back(parse_unary(false));
      e = node(Expr::Type::unary, line, std::move(args), std::move(op));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    return with_filter ? parse_filter_expr(std::move(e)) : std::move(e);
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    const int line = t.line;
    if (t.type == T::name) {
      std::string name = t.text;
      advance();
      if (name == "true" || name == "True" || name == "false" || name == "False") return literal(Value::boolean(name[0] == 't' || name[0] == 'T'), line);
      if (name == "none" || name == "None") return literal(Value::none(), line);
      for (Stmt* m : macros_) {
        m->catch_varargs |= name == "varargs";
        m->catch_kwargs |= name == "kwargs";
      }
      if (name == "loop" && !loops_.empty()) loops_.back()->uses_loop = true;
      return node(Expr::Type::name, line, {}, std::move(name));
    }
    if (t.type == T::string) {
      std::string s;
      for (; cur().type == T::string; advance()) s += cur().text;
      return literal(Value::string(std::move(s)), line);
    }
    if (t.type == T::integer || t.type == T::floating) {
      Value v = t.type == T::integer ? Value::integer(t.integer) : Value::floating(t.floating);
      advance();
      return literal(std::move(v), line);
    }
    if (skip_op("(")) {
      ExprPtr e = parse_tuple(true, "", true);
      expect_op(")");
      return e;
    }
    if (is_op("[") || is_op("{")) return parse_collection(is_op("{"));
    error(fmt::format("unexpected {}", describe(t)));
  }

  // [a, b] or {k: v, ...}; a trailing comma is allowed.
  ExprPtr parse_collection(bool dict) {
    const int line = cur().line;
    const std::string_view close = dict ? "}" : "]";
    advance();
    std::vector<ExprPtr> items;
    while (!is_op(close)) {
      if (!items.empty()) expect_op(",");
      if (is_op(close)) break;
      items.push_back(parse_expression(true));
      if (dict) {
        expect_op(":");
        items.push_back(parse_expression(true));
      }
    }
    advance();
    return node(dict ? Expr::Type::dict : Expr::Type::list, line, std::move(items));
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".") || is_op("[")) e = parse_subscript(std::move(e));
      else if (is_op("(")) e = parse_call(std::move(e), Expr::Type::call, "");
      else return e;
    }
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (is_op("|")) e = parse_filter(std::move(e));
      else if (is_name("is")) e = parse_test(std::move(e));
      else if (is_op("(")) e = parse_call(std::move(e), Expr::Type::call, "");
      else return e;
    }
  }

  ExprPtr parse_subscript(ExprPtr e) {
    const int line = cur().line;
    std::vector<ExprPtr> args;
    args.push_back(std::move(e));
    if (skip_op(".")) {
      if (cur().type == T::name) return node(Expr::Type::attr, line, std::move(args), expect_name());
      if (cur().type != T::integer) error("expected name or number");
      args.push_back(literal(Value::integer(cur().integer), line));
      advance();
      return node(Expr::Type::item, line, std::move(args));
    }
    advance();
    std::vector<ExprPtr> keys;
    while (!is_op("]")) {
      if (!keys.empty()) expect_op(",");
      keys.push_back(parse_subscribed());
    }
    advance();
    if (keys.size() == 1 && keys[0]->type == Expr::Type::slice) {
      keys[0]->args[0] = std::move(args[0]);
      return measured(std::move(keys[0]));
    }
    for (const auto& k : keys)
      if (k->type == Expr::Type::slice) syntax_error(line, "a slice inside a tuple subscript is not supported");
    args.push_back(keys.size() == 1 ? std::move(keys[0]) : node(Expr::Type::tuple, line, std::move(keys)));
    return node(Expr::Type::item, line, std::move(args));
  }

  // An index, or a slice start:stop:step (a slice node whose object, args[0], comes later).
  ExprPtr parse_subscribed() {
    const int line = cur().line;
    std::vector<ExprPtr> bounds(4);
    if (!skip_op(":")) {
      ExprPtr e = parse_expression(true);
      if (!skip_op(":")) return e;
      bounds[1] = std::move(e);
    }
    auto bound = [&] { return is_op("]") || is_op(",") ? nullptr : parse_expression(true); };
    if (!is_op(":")) bounds[2] = bound();
    if (skip_op(":")) bounds[3] = bound();
    return node(Expr::Type::slice, line, std::move(bounds));
  }

  // A call, filter or test with arguments: (a, b, key=c); *args and **kwargs are not supported.
  ExprPtr parse_call(ExprPtr subject, Expr::Type type, std::string name) {
    const int line = cur().line;
    std::vector<ExprPtr> args;
    args.push_back(std::move(subject));
    ExprPtr e = node(type, line, std::move(args), std::move(name));
    if (!is_op("(")) return e;
    advance();
    while (!is_op(")")) {
      if (e->args.size() > 1 || !e->kwargs.empty()) {
        expect_op(",");
        if (is_op(")")) break;
      }
      if (is_op("*") || is_op("**")) error("*args and **kwargs in calls are not supported");
      if (cur().type == T::name && peek().type == T::op && peek().text == "=") {
        std::string key = expect_name();
        advance();
        e->kwargs.emplace_back(std::move(key), parse_expression(true));
      } else {
        if (!e->kwargs.empty()) error("invalid syntax for function call expression");
        e->args.push_back(parse_expression(true));
      }
    }
    advance();
    return measured(std::move(e));
  }

  // | name(args); subject is null for the filters of {% set x | f %}.
  ExprPtr parse_filter(ExprPtr subject) {
    advance();
    const std::string name = dotted_name();
    return parse_call(std::move(subject), Expr::Type::filter, std::move(name));
  }

  ExprPtr parse_test(ExprPtr subject) {
    const int line = cur().line;
    advance();
    const bool negated = skip_name("not");
    const std::string name = dotted_name();
    ExprPtr e = parse_call(std::move(subject), Expr::Type::test, std::move(name));
    const bool bare_arg = (cur().type == T::name || cur().type == T::string || cur().type == T::integer ||
                           cur().type == T::floating || is_op("[") || is_op("{")) &&
                          !is_name("else") && !is_name("or") && !is_name("and");
    if (e->args.size() == 1 && e->kwargs.empty() && bare_arg) {  // x is divisibleby 3
      if (is_name("is")) error("You cannot chain multiple tests with is");
      e->args.push_back(parse_postfix(parse_primary()));
      e = measured(std::move(e));
    }
    if (!negated) return e;
    std::vector<ExprPtr> args;
    args.push_back(std::move(e));
    return node(Expr::Type::not_, line, std::move(args));
  }

  std::vector<Token> t_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;            // enclosing for loops (in the current macro)
  std::vector<Stmt*> macros_;     // the macros being parsed, innermost last
  std::vector<Stmt*> loops_;      // the for loops whose bodies are being parsed, innermost last
};

// jinja2 rejects an unknown filter or test when it compiles the template, except inside an if
// (its conditions and bodies) or an inline if, where it fails only if it runs.
void check_names(const Expr& e, bool soft) {
  soft = soft || e.type == Expr::Type::cond;
  if (!soft && e.type == Expr::Type::filter && !is_jinja_filter(e.name)) syntax_error(e.line, fmt::format("no filter named '{}'", e.name));
  if (!soft && e.type == Expr::Type::test && !is_jinja_test(e.name)) syntax_error(e.line, fmt::format("no test named '{}'", e.name));
  for (const auto& a : e.args)
    if (a) check_names(*a, soft);
  for (const auto& [k, a] : e.kwargs) check_names(*a, soft);
}

// A for loop's body, filter and else, a macro, a set block and a generation block start outside
// an if.
void check_names(const std::vector<Stmt>& body, bool soft) {
  for (const Stmt& s : body) {
    const bool fresh = s.type == Stmt::Type::macro || s.type == Stmt::Type::set_block || s.type == Stmt::Type::scope;
    const bool in_if = soft || s.type == Stmt::Type::if_;
    for (size_t i = 0; i < s.exprs.size(); ++i)
      if (s.exprs[i]) check_names(*s.exprs[i], in_if && !fresh && !(s.type == Stmt::Type::for_ && i == 1));
    check_names(s.body, in_if && !fresh && s.type != Stmt::Type::for_);
    check_names(s.else_body, in_if && s.type != Stmt::Type::for_);
  }
}

}  // namespace

std::vector<Stmt> parse(std::vector<Token> tokens) {
  std::vector<Stmt> body = Parser(std::move(tokens)).run();
  check_names(body, false);
  return body;
}

}  // namespace loom::chat
