// The values a chat template computes with, and Python's semantics for them (printing, truth,
// equality, ordering, arithmetic, iteration), as jinja2 evaluates templates over Python objects.
// Internal to loom/chat: the public interface is template.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "loom/core/error.h"

namespace loom::chat {

// An error found while rendering. The evaluator adds the template line and rethrows it as a
// plain loom::Error.
struct Failure : Error {
  using Error::Error;
};

template <typename... A>
[[noreturn]] void fail(fmt::format_string<A...> f, A&&... a) {
  throw Failure(fmt::format(f, std::forward<A>(a)...));
}

class Value;
struct Seq;
struct Dict;
struct Object;
struct Function;

// jinja2's Undefined: prints as "", is false, iterates as empty; most other uses fail with
// `hint` ("'x' is undefined", "'dict object' has no attribute 'y'", ...).
struct Undefined {
  std::shared_ptr<const std::string> hint;
};
struct None {};
// A str; `markup` marks jinja2's Markup (from |safe): `+` escapes the other operand.
struct Str {
  std::shared_ptr<const std::string> text;
  bool markup = false;
};

class Value {
 public:
  // In the order of Data's alternatives.
  enum class Kind : uint8_t { undefined, none, boolean, integer, floating, string, seq, dict, object, function };

  Value() : data_(Undefined{}) {}
  static Value undefined(std::string hint);
  static Value none() { return Value(None{}); }
  static Value boolean(bool b) { return Value(b); }
  static Value integer(int64_t i) { return Value(i); }
  static Value floating(double f) { return Value(f); }
  static Value string(std::string s, bool markup = false);
  static Value seq(Seq s);
  static Value dict(Dict d);
  // A Namespace or LoopContext; the RenderScope keeps namespaces (see there).
  static Value object(std::string type, Dict attrs);
  static Value function(Function f);
  // JSON as Python's json.loads gives it (objects keep their key order).
  static Value from_json(const nlohmann::ordered_json& j);

  Kind kind() const { return Kind(data_.index()); }
  bool is(Kind k) const { return kind() == k; }
  // bool, int or float (Python's bool is an int).
  bool is_number() const { return is(Kind::boolean) || is(Kind::integer) || is(Kind::floating); }
  // bool or int.
  bool is_int() const { return is(Kind::boolean) || is(Kind::integer); }

  bool boolean() const { return std::get<bool>(data_); }
  int64_t integer() const;  // of a bool or int
  double number() const;    // of a bool, int or float
  const std::string& str() const { return *std::get<Str>(data_).text; }
  bool markup() const { return is(Kind::string) && std::get<Str>(data_).markup; }
  const std::string& hint() const;  // of an undefined
  const Seq& seq() const { return *std::get<std::shared_ptr<const Seq>>(data_); }
  const Dict& dict() const { return *std::get<std::shared_ptr<const Dict>>(data_); }
  Object& object() const { return *std::get<std::shared_ptr<Object>>(data_); }
  const Function& function() const { return *std::get<std::shared_ptr<const Function>>(data_); }
  // Identity of a seq, dict, object or function (Python's `is`); null for the other kinds.
  const void* identity() const;

 private:
  using Data = std::variant<Undefined, None, bool, int64_t, double, Str, std::shared_ptr<const Seq>,
                            std::shared_ptr<const Dict>, std::shared_ptr<Object>, std::shared_ptr<const Function>>;
  template <typename T>
  explicit Value(T v) : data_(std::move(v)) {}
  Data data_;
};

// Values nest at most this deep (lists and dicts; printing also counts namespaces).
inline constexpr int kMaxDepth = 128;

// list, tuple, range, a dict view, or an iterator (what jinja2's filters return as generators:
// always true, consumed by iterating, no length or index).
struct Seq {
  enum class Type : uint8_t { list, tuple, range, dict_keys, dict_values, dict_items, iterator };
  Type type = Type::list;
  std::vector<Value> items;
  mutable size_t consumed = 0;  // an iterator's position
  int depth = 1;                // set by Value::seq
};

// A Python dict with str keys, in insertion order.
struct Dict {
  std::vector<std::pair<std::string, Value>> items;
  int depth = 1;  // set by Value::dict
  const Value* find(std::string_view key) const;
  void set(std::string key, Value v);  // replaces in place or appends
};

// jinja2's Namespace (type "Namespace", attributes assignable with {% set ns.x = ... %}) or a
// for loop's `loop` (type "LoopContext").
struct Object {
  std::string type;
  Dict attrs;
};

struct Call {
  std::vector<Value> args;
  std::vector<std::pair<std::string, Value>> kwargs;
};

// A macro, a global (range, namespace, ...) or a bound method ("abc".split).
struct Function {
  std::string name;
  bool macro = false;
  std::function<Value(const Call&)> call;
};

// Binds a call to Python parameters: positional arguments first, then keywords by name; a
// parameter given neither way is nullopt. Extra or unknown arguments are an error naming `fn`.
std::vector<std::optional<Value>> bind(const Call& call, std::string_view fn, std::initializer_list<std::string_view> params);

// Python type names, for messages ("str", "list", "dict", "NoneType", ...).
std::string type_name(const Value& v);

bool truthy(const Value& v);
std::string to_str(const Value& v);  // str(v); printing a function or a generator fails
std::string repr(const Value& v);
bool equal(const Value& a, const Value& b);
// a op b for op in == != < <= > >=; ordering fails for types Python does not order.
bool compare(std::string_view op, const Value& a, const Value& b);
// a op b for op in + - * / // % **.
Value arithmetic(std::string_view op, const Value& a, const Value& b);
Value unary(char op, const Value& v);  // -v or +v
bool contains(const Value& container, const Value& item);  // item in container
// The items a for loop sees (a dict's keys, a str's characters); consumes an iterator.
std::vector<Value> iterate(const Value& v);
int64_t length(const Value& v);  // len(v)
// A list, tuple or range: what takes an int index or a slice.
bool is_indexable(const Value& v);
// A list (or tuple, or iterator) value.
Value make_seq(std::vector<Value> items, Seq::Type type = Seq::Type::list);

// What one render owns and may use, so that no template hangs or exhausts memory: at most
// kMaxSteps steps of work (an evaluation, an item or 256 bytes walked through) and kMaxBytes
// bytes of strings, lists and dicts built (the output included). Template::render opens a
// RenderScope; inside it, the Value factories and step() count against it. It also keeps the render's namespaces and empties them at the end, which
// frees the cycles a template can build ({% set ns.me = ns %}): namespaces are the only values
// that change after they are made, so every cycle passes through one.
inline constexpr int64_t kMaxSteps = 2'000'000;
inline constexpr size_t kMaxBytes = size_t(128) << 20;
class RenderScope {
 public:
  RenderScope();  // this thread's scope until destroyed
  ~RenderScope();
  RenderScope(const RenderScope&) = delete;
  RenderScope& operator=(const RenderScope&) = delete;

  int64_t steps = 0;
  size_t bytes = 0;
  std::vector<std::shared_ptr<Object>> namespaces;

 private:
  RenderScope* outer_;
};
void step(int64_t cost = 1);
// The steps of walking through n bytes of text.
inline int64_t text_cost(size_t n) { return int64_t(n / 256); }
// Fails unless `bytes` more string bytes fit: called before building a string whose size can
// exceed its inputs' (repetition, join, printing a container).
void ensure_room(size_t bytes);

}  // namespace loom::chat
