// The renderer of the Jinja subset: walks the tree of jinja_parse.cpp with jinja2's scoping (a
// for loop's body and a macro call get scopes of their own; if does not), loop variables,
// macros, and errors that name the template line.
#include <unordered_map>

#include "loom/chat/builtins.h"
#include "loom/chat/jinja.h"

namespace loom::chat {

namespace {

using K = Value::Kind;

struct Frame {
  std::unordered_map<std::string, Value> vars;
  std::shared_ptr<Frame> parent;
};
using FramePtr = std::shared_ptr<Frame>;

FramePtr child(const FramePtr& parent) {
  auto f = std::make_shared<Frame>();
  f->parent = parent;
  return f;
}

enum class Flow { normal, break_, continue_ };

// Nested statements, expressions and macro calls at run time stay below this.
constexpr int kMaxRecursion = 400;

void append(std::string& out, std::string_view piece) {
  ensure_room(out.size() + piece.size());
  out += piece;
}

class Renderer {
 public:
  explicit Renderer(const Dict& context) : root_(std::make_shared<Frame>()) {
    root_->parent = std::make_shared<Frame>();
    for (auto& [k, v] : make_globals().items) root_->parent->vars[k] = v;
    for (const auto& [k, v] : context.items) root_->vars[k] = v;
  }

  std::string run(const std::vector<Stmt>& body) {
    std::string out;
    exec_body(body, root_, out);
    return out;
  }

 private:
  struct Deeper {
    explicit Deeper(int& depth) : depth_(depth) {
      if (++depth_ > kMaxRecursion) fail("the template nests more than {} levels deep while rendering", kMaxRecursion);
    }
    ~Deeper() { --depth_; }
    int& depth_;
  };

  Flow exec_body(const std::vector<Stmt>& body, const FramePtr& f, std::string& out) {
    for (const Stmt& s : body) {
      const Flow flow = exec(s, f, out);
      if (flow != Flow::normal) return flow;
    }
    return Flow::normal;
  }

  Flow exec(const Stmt& s, const FramePtr& f, std::string& out) {
    try {
      Deeper deeper(depth_);
      step();
      return exec_stmt(s, f, out);
    } catch (const Failure& e) {
      throw Error(fmt::format("chat template: line {}: {}", s.line, e.what()));
    }
  }

  Flow exec_stmt(const Stmt& s, const FramePtr& f, std::string& out) {
    switch (s.type) {
      case Stmt::Type::text: append(out, s.text); break;
      case Stmt::Type::output:
        for (const auto& e : s.exprs) append(out, to_str(eval(*e, f)));
        break;
      case Stmt::Type::if_: return exec_body(truthy(eval(*s.exprs[0], f)) ? s.body : s.else_body, f, out);
      case Stmt::Type::for_: return exec_for(s, f, out);
      case Stmt::Type::set: assign(s.target, eval(*s.exprs[0], f), f); break;
      case Stmt::Type::set_block: {
        std::string text;
        if (const Flow flow = exec_body(s.body, child(f), text); flow != Flow::normal) return flow;
        Value v = Value::string(std::move(text));
        for (const auto& filter : s.exprs) v = apply_filter(filter->name, v, eval_args(*filter, f));
        assign(s.target, v, f);
        break;
      }
      case Stmt::Type::macro: {
        std::weak_ptr<Frame> scope = f;
        f->vars[s.text] = Value::function(Function{s.text, true, [this, &s, scope](const Call& c) { return call_macro(s, scope, c); }});
        break;
      }
      case Stmt::Type::break_: return Flow::break_;
      case Stmt::Type::continue_: return Flow::continue_;
      case Stmt::Type::scope: return exec_body(s.body, child(f), out);
    }
    return Flow::normal;
  }

  // Items are taken (and the loop's filter applied) before the first iteration; each iteration
  // and the else branch run in fresh scopes, so what they set does not outlive them.
  Flow exec_for(const Stmt& s, const FramePtr& f, std::string& out) {
    std::vector<Value> items = iterate(eval(*s.exprs[0], f));
    if (s.exprs[1]) {
      std::vector<Value> kept;
      for (Value& item : items) {
        const FramePtr scope = child(f);
        assign(s.target, item, scope);
        if (truthy(eval(*s.exprs[1], scope))) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    for (size_t i = 0; i < items.size(); ++i) {
      step();
      const FramePtr scope = child(f);
      assign(s.target, items[i], scope);
      if (s.uses_loop) scope->vars["loop"] = loop_object(items, i);
      if (exec_body(s.body, scope, out) == Flow::break_) break;
    }
    return items.empty() ? exec_body(s.else_body, child(f), out) : Flow::normal;
  }

  static Value loop_object(const std::vector<Value>& items, size_t i) {
    const auto n = int64_t(items.size()), k = int64_t(i);
    Dict d;
    d.items = {
        {"index", Value::integer(k + 1)},
        {"index0", Value::integer(k)},
        {"revindex", Value::integer(n - k)},
        {"revindex0", Value::integer(n - k - 1)},
        {"first", Value::boolean(k == 0)},
        {"last", Value::boolean(k == n - 1)},
        {"length", Value::integer(n)},
        {"depth", Value::integer(1)},
        {"depth0", Value::integer(0)},
        {"previtem", k > 0 ? items[i - 1] : Value::undefined("there is no previous item")},
        {"nextitem", k < n - 1 ? items[i + 1] : Value::undefined("there is no next item")},
        {"cycle", Value::function(Function{"loop.cycle", false, [k](const Call& c) {
                                            if (c.args.empty() || !c.kwargs.empty()) fail("loop.cycle takes the items to cycle through");
                                            return c.args[size_t(k) % c.args.size()];
                                          }})},
        {"changed", Value::function(Function{"loop.changed", false, [](const Call&) -> Value { fail("loop.changed is not supported"); }})},
    };
    return Value::object("LoopContext", std::move(d));
  }

  void assign(const Target& t, const Value& v, const FramePtr& f) {
    if (!t.attr.empty()) {
      const Value ns = lookup(t.name, f);
      if (!ns.is(K::object) || ns.object().type != "Namespace") fail("cannot assign attribute on non-namespace object");
      ns.object().attrs.set(t.attr, v);
    } else if (!t.tuple) {
      f->vars[t.name] = v;
    } else {
      const std::vector<Value> items = iterate(v);
      if (items.size() < t.items.size()) fail("not enough values to unpack (expected {}, got {})", t.items.size(), items.size());
      if (items.size() > t.items.size()) fail("too many values to unpack (expected {})", t.items.size());
      for (size_t i = 0; i < items.size(); ++i) assign(t.items[i], items[i], f);
    }
  }

  static Value lookup(const std::string& name, const FramePtr& f) {
    for (const Frame* frame = f.get(); frame; frame = frame->parent.get())
      if (auto it = frame->vars.find(name); it != frame->vars.end()) return it->second;
    return Value::undefined(fmt::format("'{}' is undefined", name));
  }

  // Binds a call to the macro's parameters as jinja2's Macro does; a parameter neither given nor
  // defaulted is undefined. The body runs in a scope under the one the macro was defined in.
  Value call_macro(const Stmt& s, const std::weak_ptr<Frame>& scope, const Call& c) {
    const FramePtr parent = scope.lock();
    if (!parent) fail("macro '{}' is called after the scope it was defined in ended", s.text);
    const FramePtr frame = child(parent);
    const size_t n = s.params.size();
    if (c.args.size() > n && !s.catch_varargs) fail("macro '{}' takes not more than {} argument(s)", s.text, n);
    std::vector<bool> given(n);
    for (size_t i = 0; i < std::min(n, c.args.size()); ++i) {
      frame->vars[s.params[i]] = c.args[i];
      given[i] = true;
    }
    Dict extra;
    for (const auto& [k, v] : c.kwargs) {
      const auto i = size_t(std::find(s.params.begin(), s.params.end(), k) - s.params.begin());
      if (i < n && !given[i]) {
        frame->vars[k] = v;
        given[i] = true;
      } else if (s.catch_kwargs) {
        extra.set(k, v);
      } else {
        fail("macro '{}' takes no keyword argument '{}'", s.text, k);
      }
    }
    for (size_t i = 0; i < n; ++i)
      if (!given[i])
        frame->vars[s.params[i]] = s.exprs[i] ? eval(*s.exprs[i], frame) : Value::undefined(fmt::format("parameter '{}' was not provided", s.params[i]));
    if (s.catch_varargs)
      frame->vars["varargs"] = make_seq({c.args.begin() + std::ptrdiff_t(std::min(n, c.args.size())), c.args.end()}, Seq::Type::tuple);
    if (s.catch_kwargs) frame->vars["kwargs"] = Value::dict(std::move(extra));
    std::string out;
    exec_body(s.body, frame, out);
    return Value::string(std::move(out));
  }

  Value eval(const Expr& e, const FramePtr& f) {
    try {
      Deeper deeper(depth_);
      step();
      return eval_expr(e, f);
    } catch (const Failure& x) {
      throw Error(fmt::format("chat template: line {}: {}", e.line, x.what()));
    }
  }

  std::optional<Value> eval_opt(const ExprPtr& e, const FramePtr& f) { return e ? std::optional(eval(*e, f)) : std::nullopt; }

  // The arguments of a call, filter or test (args[0] is what it applies to).
  Call eval_args(const Expr& e, const FramePtr& f) {
    Call c;
    for (size_t i = 1; i < e.args.size(); ++i) c.args.push_back(eval(*e.args[i], f));
    for (const auto& [k, v] : e.kwargs) c.kwargs.emplace_back(k, eval(*v, f));
    return c;
  }

  Value eval_expr(const Expr& e, const FramePtr& f) {
    using T = Expr::Type;
    switch (e.type) {
      case T::literal: return e.value;
      case T::name: return lookup(e.name, f);
      case T::list:
      case T::tuple: {
        std::vector<Value> items;
        for (const auto& a : e.args) items.push_back(eval(*a, f));
        return make_seq(std::move(items), e.type == T::tuple ? Seq::Type::tuple : Seq::Type::list);
      }
      case T::dict: {
        Dict d;
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          const Value key = eval(*e.args[i], f);
          if (!key.is(K::string)) fail("dict keys other than strings are not supported");
          d.set(key.str(), eval(*e.args[i + 1], f));
        }
        return Value::dict(std::move(d));
      }
      case T::attr: return get_attr(eval(*e.args[0], f), e.name);
      case T::item: return get_item(eval(*e.args[0], f), eval(*e.args[1], f));
      case T::slice: {
        const Value obj = eval(*e.args[0], f);
        return get_slice(obj, eval_opt(e.args[1], f), eval_opt(e.args[2], f), eval_opt(e.args[3], f));
      }
      case T::call: {
        const Value callee = eval(*e.args[0], f);
        const Call c = eval_args(e, f);
        if (callee.is(K::undefined)) fail("{}", callee.hint());
        if (!callee.is(K::function)) fail("'{}' object is not callable", type_name(callee));
        return callee.function().call(c);
      }
      case T::filter: {
        const Value subject = eval(*e.args[0], f);
        return apply_filter(e.name, subject, eval_args(e, f));
      }
      case T::test: {
        const Value subject = eval(*e.args[0], f);
        return Value::boolean(apply_test(e.name, subject, eval_args(e, f)));
      }
      case T::unary: return unary(e.name[0], eval(*e.args[0], f));
      case T::binary: {
        const Value a = eval(*e.args[0], f);
        return arithmetic(e.name, a, eval(*e.args[1], f));
      }
      case T::logic: {  // Python's and/or: the operand that decides
        Value a = eval(*e.args[0], f);
        const bool decided = e.name == "and" ? !truthy(a) : truthy(a);
        return decided ? a : eval(*e.args[1], f);
      }
      case T::not_: return Value::boolean(!truthy(eval(*e.args[0], f)));
      case T::compare: {  // chained as in Python: a < b < c is a < b and b < c
        Value left = eval(*e.args[0], f);
        for (size_t i = 0; i < e.ops.size(); ++i) {
          Value right = eval(*e.args[i + 1], f);
          const std::string& op = e.ops[i];
          const bool ok = op == "in" ? contains(right, left) : op == "notin" ? !contains(right, left) : compare(op, left, right);
          if (!ok) return Value::boolean(false);
          left = std::move(right);
        }
        return Value::boolean(true);
      }
      case T::concat: {
        std::string s;
        for (const auto& a : e.args) append(s, to_str(eval(*a, f)));
        return Value::string(std::move(s));
      }
      case T::cond:
        if (truthy(eval(*e.args[0], f))) return eval(*e.args[1], f);
        if (e.args[2]) return eval(*e.args[2], f);
        return Value::undefined(fmt::format("the inline if-expression on line {} evaluated to false and no else section was defined.", e.line));
    }
    return Value();
  }

  FramePtr root_;
  int depth_ = 0;
};

}  // namespace

std::string render(const std::vector<Stmt>& body, const Dict& context) { return Renderer(context).run(body); }

}  // namespace loom::chat
