// Python's semantics for the values of a chat template (see value.h).
#include "loom/chat/value.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "loom/chat/pystr.h"

namespace loom::chat {

namespace {

thread_local RenderScope* current_scope = nullptr;

void charge(size_t bytes) {
  ensure_room(bytes);
  if (current_scope) current_scope->bytes += bytes;
}

int depth_of(const Value& v) {
  return v.is(Value::Kind::seq) ? v.seq().depth : v.is(Value::Kind::dict) ? v.dict().depth : 0;
}

int nested_depth(int deepest_child) {
  if (deepest_child >= kMaxDepth) fail("values nested more than {} deep are not supported", kMaxDepth);
  return deepest_child + 1;
}

Value from_json_at(const nlohmann::ordered_json& j, int depth) {
  using T = nlohmann::ordered_json::value_t;
  if (depth > kMaxDepth) fail("context: JSON nested more than {} deep is not supported", kMaxDepth);
  switch (j.type()) {
    case T::null: return Value::none();
    case T::boolean: return Value::boolean(j.get<bool>());
    case T::number_integer: return Value::integer(j.get<int64_t>());
    case T::number_unsigned: {
      const auto u = j.get<uint64_t>();
      if (u > uint64_t(std::numeric_limits<int64_t>::max())) fail("context: integer {} is out of range", u);
      return Value::integer(int64_t(u));
    }
    case T::number_float: return Value::floating(j.get<double>());
    case T::string: {
      const auto& s = j.get_ref<const std::string&>();
      if (!is_utf8(s)) fail("context: a string is not valid UTF-8");
      return Value::string(s);
    }
    case T::array: {
      std::vector<Value> items;
      for (const auto& e : j) items.push_back(from_json_at(e, depth + 1));
      return make_seq(std::move(items));
    }
    case T::object: {
      Dict d;
      for (const auto& [k, e] : j.items()) {
        if (!is_utf8(k)) fail("context: a key is not valid UTF-8");
        d.set(k, from_json_at(e, depth + 1));
      }
      return Value::dict(std::move(d));
    }
    default: fail("context: JSON of type {} is not supported", j.type_name());
  }
}

std::string seq_repr(const Seq& s, int depth);

std::string repr_at(const Value& v, int depth) {
  using K = Value::Kind;
  if (depth > kMaxDepth) fail("printing values nested more than {} deep is not supported", kMaxDepth);
  switch (v.kind()) {
    case K::undefined: return "Undefined";
    case K::string: return v.markup() ? "Markup(" + str_repr(v.str()) + ")" : str_repr(v.str());
    case K::seq: return seq_repr(v.seq(), depth);
    case K::dict: {
      std::string out = "{";
      for (const auto& [k, e] : v.dict().items) {
        out += (out.size() > 1 ? ", " : "") + str_repr(k) + ": " + repr_at(e, depth + 1);
        ensure_room(out.size());
      }
      return out + "}";
    }
    case K::object: {
      const Object& o = v.object();
      if (o.type == "Namespace") return "<Namespace " + repr_at(Value::dict(o.attrs), depth + 1) + ">";
      return fmt::format("<LoopContext {}/{}>", to_str(*o.attrs.find("index")), to_str(*o.attrs.find("length")));
    }
    case K::function:
      if (!v.function().macro) fail("printing the function {} is not supported", v.function().name);
      return fmt::format("<Macro '{}'>", v.function().name);
    default: return to_str(v);
  }
}

std::string seq_repr(const Seq& s, int depth) {
  using T = Seq::Type;
  if (s.type == T::iterator) fail("printing a generator is not supported (Python prints its address)");
  if (s.type == T::range) fail("printing a range is not supported");
  std::string out;
  for (const Value& e : s.items) {
    out += (out.empty() ? "" : ", ") + repr_at(e, depth + 1);
    ensure_room(out.size());
  }
  switch (s.type) {
    case T::tuple: return "(" + out + (s.items.size() == 1 ? ",)" : ")");
    case T::dict_keys: return "dict_keys([" + out + "])";
    case T::dict_values: return "dict_values([" + out + "])";
    case T::dict_items: return "dict_items([" + out + "])";
    default: return "[" + out + "]";
  }
}

[[noreturn]] void fail_operands(std::string_view op, const Value& a, const Value& b) {
  fail("unsupported operand type(s) for {}: '{}' and '{}'", op, type_name(a), type_name(b));
}

[[noreturn]] void overflow() { fail("integer overflow (Python's integers are unbounded; Loom's are 64-bit)"); }

// a op b for op in + - *, failing where 64 bits overflow.
int64_t checked(char op, int64_t a, int64_t b) {
  int64_t r = 0;
  if (op == '+' ? __builtin_add_overflow(a, b, &r) : op == '-' ? __builtin_sub_overflow(a, b, &r) : __builtin_mul_overflow(a, b, &r))
    overflow();
  return r;
}

// Python's // and % on ints: the quotient rounds down, the remainder takes the divisor's sign.
std::pair<int64_t, int64_t> int_divmod(int64_t a, int64_t b) {
  if (b == 0) fail("integer division or modulo by zero");
  if (a == std::numeric_limits<int64_t>::min() && b == -1) overflow();
  int64_t q = a / b, r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) {
    --q;
    r += b;
  }
  return {q, r};
}

// Python's float // and %.
std::pair<double, double> float_divmod(double a, double b) {
  if (b == 0) fail("float division by zero");
  double mod = std::fmod(a, b);
  double div = (a - mod) / b;
  if (mod != 0) {
    if ((b < 0) != (mod < 0)) {
      mod += b;
      div -= 1.0;
    }
  } else {
    mod = std::copysign(0.0, b);
  }
  double floordiv = std::copysign(0.0, a / b);
  if (div != 0) {
    floordiv = std::floor(div);
    if (div - floordiv > 0.5) floordiv += 1.0;
  }
  return {floordiv, mod};
}

Value power(const Value& a, const Value& b) {
  if (a.is_int() && b.is_int() && b.integer() >= 0) {
    int64_t r = 1, base = a.integer();
    for (int64_t e = b.integer(); e > 0; e >>= 1) {
      if (e & 1) r = checked('*', r, base);
      if (e > 1) base = checked('*', base, base);
    }
    return Value::integer(r);
  }
  const double x = a.number(), y = b.number();
  if (x == 0 && y < 0) fail("zero to a negative power");
  if (x < 0 && y != std::floor(y)) fail("a negative number to a fractional power is complex, which is not supported");
  const double r = std::pow(x, y);
  if (std::isinf(r) && std::isfinite(x) && std::isfinite(y)) fail("numerical result out of range");
  return Value::floating(r);
}

// s * n or seq * n.
Value repeat(const Value& v, int64_t n) {
  const bool text = v.is(Value::Kind::string);
  const size_t unit = text ? v.str().size() : v.seq().items.size() * sizeof(Value);
  n = unit == 0 ? 0 : std::max<int64_t>(n, 0);
  ensure_room(uint64_t(n) > kMaxBytes / std::max<size_t>(unit, 1) ? kMaxBytes + 1 : unit * size_t(n));
  if (text) {
    std::string out;
    for (int64_t i = 0; i < n; ++i) out += v.str();
    return Value::string(std::move(out), v.markup());
  }
  std::vector<Value> out;
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), v.seq().items.begin(), v.seq().items.end());
  return make_seq(std::move(out), v.seq().type);
}

bool is_repeatable(const Value& v) {
  return v.is(Value::Kind::string) ||
         (v.is(Value::Kind::seq) && (v.seq().type == Seq::Type::list || v.seq().type == Seq::Type::tuple));
}

// jinja2's Markup escaping, applied to the plain operand of `+` with a Markup.
std::string html_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '\'': out += "&#39;"; break;
      case '"': out += "&#34;"; break;
      default: out += c;
    }
  }
  return out;
}

Value add(const Value& a, const Value& b) {
  using K = Value::Kind;
  if (a.is(K::string) && b.is(K::string)) {
    ensure_room(a.str().size() + b.str().size());
    if (!a.markup() && !b.markup()) return Value::string(a.str() + b.str());
    const std::string left = a.markup() ? a.str() : html_escape(a.str());
    return Value::string(left + (b.markup() ? b.str() : html_escape(b.str())), true);
  }
  if (a.is(K::seq) && b.is(K::seq) && a.seq().type == b.seq().type && is_repeatable(a)) {
    std::vector<Value> items = a.seq().items;
    items.insert(items.end(), b.seq().items.begin(), b.seq().items.end());
    return make_seq(std::move(items), a.seq().type);
  }
  fail_operands("+", a, b);
}

bool ordered_compare(std::string_view op, int c) {
  return op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
}

}  // namespace

Value Value::undefined(std::string hint) { return Value(Undefined{std::make_shared<const std::string>(std::move(hint))}); }

Value Value::string(std::string s, bool markup) {
  charge(s.size());
  return Value(Str{std::make_shared<const std::string>(std::move(s)), markup});
}

Value Value::seq(Seq s) {
  int deepest = 0;
  for (const Value& v : s.items) deepest = std::max(deepest, depth_of(v));
  s.depth = nested_depth(deepest);
  charge(s.items.size() * sizeof(Value));
  return Value(std::shared_ptr<const Seq>(std::make_shared<Seq>(std::move(s))));
}

Value Value::dict(Dict d) {
  int deepest = 0;
  for (const auto& [k, v] : d.items) deepest = std::max(deepest, depth_of(v));
  d.depth = nested_depth(deepest);
  charge(d.items.size() * sizeof(Value));
  return Value(std::shared_ptr<const Dict>(std::make_shared<Dict>(std::move(d))));
}

Value Value::object(std::string type, Dict attrs) {
  auto o = std::make_shared<Object>(Object{std::move(type), std::move(attrs)});
  if (current_scope && o->type == "Namespace") current_scope->namespaces.push_back(o);
  return Value(std::move(o));
}

Value Value::function(Function f) { return Value(std::shared_ptr<const Function>(std::make_shared<Function>(std::move(f)))); }

Value Value::from_json(const nlohmann::ordered_json& j) { return from_json_at(j, 0); }

int64_t Value::integer() const { return is(Kind::boolean) ? int64_t(boolean()) : std::get<int64_t>(data_); }

double Value::number() const { return is(Kind::floating) ? std::get<double>(data_) : double(integer()); }

const std::string& Value::hint() const {
  static const std::string kDefault = "undefined value";
  const auto& h = std::get<Undefined>(data_).hint;
  return h ? *h : kDefault;
}

const void* Value::identity() const {
  return std::visit(
      [](const auto& d) -> const void* {
        if constexpr (requires { d.get(); }) return d.get();
        else return nullptr;
      },
      data_);
}

const Value* Dict::find(std::string_view key) const {
  step(int64_t(items.size() / 16));
  for (const auto& [k, v] : items)
    if (k == key) return &v;
  return nullptr;
}

void Dict::set(std::string key, Value v) {
  for (auto& [k, old] : items)
    if (k == key) {
      old = std::move(v);
      return;
    }
  items.emplace_back(std::move(key), std::move(v));
}

std::vector<std::optional<Value>> bind(const Call& call, std::string_view fn, std::initializer_list<std::string_view> params) {
  const std::vector<std::string_view> names(params);
  if (call.args.size() > names.size()) fail("{} takes at most {} arguments ({} given)", fn, names.size(), call.args.size());
  std::vector<std::optional<Value>> out(names.size());
  std::copy(call.args.begin(), call.args.end(), out.begin());
  for (const auto& [k, v] : call.kwargs) {
    const auto it = std::find(names.begin(), names.end(), k);
    if (it == names.end()) fail("{} got an unexpected keyword argument '{}'", fn, k);
    auto& slot = out[size_t(it - names.begin())];
    if (slot) fail("{} got multiple values for argument '{}'", fn, k);
    slot = v;
  }
  return out;
}

std::string type_name(const Value& v) {
  using K = Value::Kind;
  switch (v.kind()) {
    case K::undefined: return "Undefined";
    case K::none: return "NoneType";
    case K::boolean: return "bool";
    case K::integer: return "int";
    case K::floating: return "float";
    case K::string: return "str";
    case K::seq: {
      static constexpr const char* kNames[] = {"list", "tuple", "range", "dict_keys", "dict_values", "dict_items", "generator"};
      return kNames[size_t(v.seq().type)];
    }
    case K::dict: return "dict";
    case K::object: return v.object().type;
    case K::function: return v.function().macro ? "Macro" : "function";
  }
  return "?";
}

bool truthy(const Value& v) {
  using K = Value::Kind;
  switch (v.kind()) {
    case K::undefined:
    case K::none: return false;
    case K::boolean:
    case K::integer: return v.integer() != 0;
    case K::floating: return v.number() != 0;
    case K::string: return !v.str().empty();
    case K::seq: return v.seq().type == Seq::Type::iterator || !v.seq().items.empty();
    case K::dict: return !v.dict().items.empty();
    default: return true;
  }
}

std::string to_str(const Value& v) {
  using K = Value::Kind;
  switch (v.kind()) {
    case K::undefined: return "";
    case K::none: return "None";
    case K::boolean: return v.boolean() ? "True" : "False";
    case K::integer: return std::to_string(v.integer());
    case K::floating: return float_repr(v.number());
    case K::string: return v.str();
    default: return repr_at(v, 0);
  }
}

std::string repr(const Value& v) { return repr_at(v, 0); }

bool equal(const Value& a, const Value& b) {
  using K = Value::Kind;
  step();
  if (a.is_number() && b.is_number()) {
    if (a.is_int() && b.is_int()) return a.integer() == b.integer();
    return a.number() == b.number();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case K::undefined:
    case K::none: return true;
    case K::string:
      step(text_cost(std::min(a.str().size(), b.str().size())));
      return a.str() == b.str();
    case K::seq: {
      const Seq &x = a.seq(), &y = b.seq();
      if (x.type == y.type && (x.type == Seq::Type::dict_keys || x.type == Seq::Type::dict_items))  // set-like
        return x.items.size() == y.items.size() &&
               std::all_of(x.items.begin(), x.items.end(), [&](const Value& v) { return contains(b, v); });
      if (x.type != y.type || !(is_repeatable(a) || x.type == Seq::Type::range)) return &x == &y;
      if (x.items.size() != y.items.size()) return false;
      for (size_t i = 0; i < x.items.size(); ++i)
        if (!equal(x.items[i], y.items[i])) return false;
      return true;
    }
    case K::dict: {
      const Dict &x = a.dict(), &y = b.dict();
      if (x.items.size() != y.items.size()) return false;
      for (const auto& [k, e] : x.items) {
        const Value* other = y.find(k);
        if (!other || !equal(e, *other)) return false;
      }
      return true;
    }
    default: return a.identity() == b.identity();
  }
}

bool compare(std::string_view op, const Value& a, const Value& b) {
  using K = Value::Kind;
  if (op == "==") return equal(a, b);
  if (op == "!=") return !equal(a, b);
  if (a.is(K::undefined) || b.is(K::undefined)) fail("{}", a.is(K::undefined) ? a.hint() : b.hint());
  if (a.is_number() && b.is_number()) {
    if (a.is_int() && b.is_int()) return ordered_compare(op, (a.integer() > b.integer()) - (a.integer() < b.integer()));
    const double x = a.number(), y = b.number();
    return op == "<" ? x < y : op == "<=" ? x <= y : op == ">" ? x > y : x >= y;
  }
  if (a.is(K::string) && b.is(K::string)) {
    step(text_cost(std::min(a.str().size(), b.str().size())));
    return ordered_compare(op, a.str().compare(b.str()));
  }
  if (a.is(K::seq) && b.is(K::seq) && a.seq().type == b.seq().type && is_repeatable(a)) {
    const auto &x = a.seq().items, &y = b.seq().items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i)
      if (!equal(x[i], y[i])) return compare(op, x[i], y[i]);
    return ordered_compare(op, (x.size() > y.size()) - (x.size() < y.size()));
  }
  fail("'{}' not supported between instances of '{}' and '{}'", op, type_name(a), type_name(b));
}

Value arithmetic(std::string_view op, const Value& a, const Value& b) {
  using K = Value::Kind;
  if (a.is(K::undefined) || b.is(K::undefined)) fail("{}", a.is(K::undefined) ? a.hint() : b.hint());
  if (op == "+" && !(a.is_number() && b.is_number())) return add(a, b);
  if (op == "*" && !(a.is_number() && b.is_number())) {
    if (is_repeatable(a) && b.is_int()) return repeat(a, b.integer());
    if (a.is_int() && is_repeatable(b)) return repeat(b, a.integer());
    fail_operands(op, a, b);
  }
  if (op == "%" && a.is(K::string)) fail("string formatting with % is not supported");
  if (!a.is_number() || !b.is_number()) fail_operands(op, a, b);
  if (op == "**") return power(a, b);
  if (op == "/") {
    if (b.number() == 0) fail("division by zero");
    return Value::floating(a.number() / b.number());
  }
  if (a.is_int() && b.is_int()) {
    const int64_t x = a.integer(), y = b.integer();
    if (op == "+" || op == "-" || op == "*") return Value::integer(checked(op[0], x, y));
    const auto [q, m] = int_divmod(x, y);
    return Value::integer(op == "//" ? q : m);
  }
  const double x = a.number(), y = b.number();
  if (op == "+") return Value::floating(x + y);
  if (op == "-") return Value::floating(x - y);
  if (op == "*") return Value::floating(x * y);
  const auto [q, m] = float_divmod(x, y);
  return Value::floating(op == "//" ? q : m);
}

Value unary(char op, const Value& v) {
  if (v.is(Value::Kind::undefined)) fail("{}", v.hint());
  if (!v.is_number()) fail("bad operand type for unary {}: '{}'", op, type_name(v));
  if (v.is(Value::Kind::floating)) return Value::floating(op == '-' ? -v.number() : v.number());
  if (op == '-' && v.integer() == std::numeric_limits<int64_t>::min()) overflow();
  return Value::integer(op == '-' ? -v.integer() : v.integer());
}

bool contains(const Value& container, const Value& item) {
  using K = Value::Kind;
  using T = Seq::Type;
  const bool unhashable = item.is(K::dict) || (item.is(K::seq) && item.seq().type == T::list);
  switch (container.kind()) {
    case K::undefined: return false;
    case K::string:
      if (!item.is(K::string)) fail("'in <string>' requires string as left operand, not {}", type_name(item));
      step(text_cost(container.str().size()));
      return container.str().find(item.str()) != std::string::npos;
    case K::dict:
      if (unhashable) fail("unhashable type: '{}'", type_name(item));
      return item.is(K::string) && container.dict().find(item.str());
    case K::seq: {
      const Seq& s = container.seq();
      if (s.type == T::dict_keys && unhashable) fail("unhashable type: '{}'", type_name(item));
      const size_t begin = s.type == T::iterator ? s.consumed : 0;
      for (size_t i = begin; i < s.items.size(); ++i) {
        if (s.type == T::iterator) s.consumed = i + 1;
        if (equal(s.items[i], item)) return true;
      }
      return false;
    }
    default: fail("argument of type '{}' is not iterable", type_name(container));
  }
}

std::vector<Value> iterate(const Value& v) {
  using K = Value::Kind;
  switch (v.kind()) {
    case K::undefined: return {};
    case K::string: {
      std::vector<Value> out;
      for (char32_t c : to_u32(v.str())) out.push_back(Value::string(to_utf8(std::u32string(1, c))));
      return out;
    }
    case K::seq: {
      const Seq& s = v.seq();
      const size_t begin = s.type == Seq::Type::iterator ? std::exchange(s.consumed, s.items.size()) : 0;
      step(int64_t(s.items.size() - begin));
      return {s.items.begin() + std::ptrdiff_t(begin), s.items.end()};
    }
    case K::dict: {
      std::vector<Value> out;
      step(int64_t(v.dict().items.size()));
      for (const auto& [k, e] : v.dict().items) out.push_back(Value::string(k));
      return out;
    }
    default: fail("'{}' object is not iterable", type_name(v));
  }
}

int64_t length(const Value& v) {
  using K = Value::Kind;
  switch (v.kind()) {
    case K::undefined: return 0;
    case K::string: step(text_cost(v.str().size())); return code_points(v.str());
    case K::seq:
      if (v.seq().type == Seq::Type::iterator) fail("object of type 'generator' has no len()");
      return int64_t(v.seq().items.size());
    case K::dict: return int64_t(v.dict().items.size());
    default: fail("object of type '{}' has no len()", type_name(v));
  }
}

bool is_indexable(const Value& v) {
  return v.is(Value::Kind::seq) && (is_repeatable(v) || v.seq().type == Seq::Type::range);
}

Value make_seq(std::vector<Value> items, Seq::Type type) {
  Seq s;
  s.type = type;
  s.items = std::move(items);
  return Value::seq(std::move(s));
}

RenderScope::RenderScope() : outer_(current_scope) { current_scope = this; }

RenderScope::~RenderScope() {
  current_scope = outer_;
  for (const auto& ns : namespaces) ns->attrs.items.clear();
}

void step(int64_t cost) {
  if (current_scope && (current_scope->steps += cost) > kMaxSteps)
    fail("the template takes more than {} steps to render", kMaxSteps);
}

void ensure_room(size_t bytes) {
  if (bytes > kMaxBytes || (current_scope && current_scope->bytes > kMaxBytes - bytes))
    fail("the template builds more than {} MiB of text", kMaxBytes >> 20);
}

}  // namespace loom::chat
