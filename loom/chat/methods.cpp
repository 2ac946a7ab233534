// Attribute, item and slice access, and the str and dict methods templates call, as jinja2's
// ImmutableSandboxedEnvironment resolves them (see builtins.h).
#include <algorithm>
#include <map>
#include <set>

#include "loom/chat/builtins.h"
#include "loom/chat/pystr.h"

namespace loom::chat {

namespace {

using K = Value::Kind;
using MethodFn = Value (*)(const Value& self, const Call& call);

// A str result of a method of `self`: jinja2's Markup methods keep it Markup.
Value like(const Value& self, std::string s) { return Value::string(std::move(s), self.markup()); }

void no_markup(const Value& self, std::string_view what) {
  if (self.markup()) fail("{} of a |safe string is not supported", what);
}

Value strip_method(const Value& self, const Call& c, bool left, bool right) {
  const auto a = bind(c, "strip", {"chars"});
  const auto chars = opt_str(a[0], "strip");
  if (chars) no_markup(self, "strip with chars");
  return like(self, str_strip(self.str(), chars, left, right));
}

Value split_method(const Value& self, const Call& c, bool from_right) {
  const auto a = bind(c, "split", {"sep", "maxsplit"});
  std::vector<Value> out;
  for (std::string& piece : str_split(self.str(), opt_str(a[0], "split"), opt_int(a[1], -1, "split"), from_right))
    out.push_back(like(self, std::move(piece)));
  return make_seq(std::move(out));
}

// startswith / endswith: a str or a tuple of str.
Value affix_method(const Value& self, const Call& c, bool start) {
  const auto a = bind(c, "startswith", {"prefix", "start", "end"});
  if (a[1] || a[2]) fail("startswith/endswith with start or end is not supported");
  if (!a[0]) fail("startswith/endswith takes an argument");
  std::vector<Value> affixes{*a[0]};
  if (a[0]->is(K::seq) && a[0]->seq().type == Seq::Type::tuple) affixes = a[0]->seq().items;
  const std::string& s = self.str();
  for (const Value& v : affixes) {
    if (!v.is(K::string)) fail("startswith/endswith: expected a str or a tuple of str, not {}", type_name(v));
    const std::string& x = v.str();
    step(text_cost(x.size()));
    if (x.size() <= s.size() && (start ? s.compare(0, x.size(), x) : s.compare(s.size() - x.size(), x.size(), x)) == 0)
      return Value::boolean(true);
  }
  return Value::boolean(false);
}

Value find_method(const Value& self, const Call& c, bool from_right) {
  const auto a = bind(c, "find", {"sub", "start", "end"});
  if (a[1] || a[2]) fail("find with start or end is not supported");
  return Value::integer(str_find(self.str(), need_str(a[0], "find"), from_right));
}

Value case_method(const Value& self, const Call& c, Case mode) {
  bind(c, "upper/lower/title/capitalize", {});
  return like(self, change_case(self.str(), mode));
}

// str.format with {} / {0} / {name} fields (no conversions, format specs or field access).
Value format_method(const Value& self, const Call& c) {
  no_markup(self, "format");
  const std::string& f = self.str();
  std::string out;
  size_t auto_index = 0;
  bool automatic = false, manual = false;  // Python refuses to mix {} with {0}
  for (size_t i = 0; i < f.size(); ++i) {
    if ((f[i] == '{' || f[i] == '}') && i + 1 < f.size() && f[i + 1] == f[i]) {
      out += f[i++];
      continue;
    }
    if (f[i] == '}') fail("format: single '}}' encountered in format string");
    if (f[i] != '{') {
      out += f[i];
      continue;
    }
    const size_t close = f.find('}', i);
    if (close == std::string::npos) fail("format: expected '}}' before end of string");
    const std::string field = f.substr(i + 1, close - i - 1);
    if (field.find_first_of("!:.[{") != std::string::npos) fail("format: the field '{{{}}}' is not supported", field);
    const Value* v = nullptr;
    if (field.empty() || std::all_of(field.begin(), field.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
      (field.empty() ? automatic : manual) = true;
      if (automatic && manual) fail("format: cannot switch between automatic and manual field numbering");
      const size_t index = field.empty() ? auto_index++ : size_t(std::stoull(field.substr(0, 9)));
      if (index >= c.args.size()) fail("format: replacement index {} out of range", index);
      v = &c.args[index];
    } else {
      for (const auto& [k, kv] : c.kwargs)
        if (k == field) v = &kv;
      if (!v) fail("format: no argument named '{}'", field);
    }
    out += to_str(*v);
    ensure_room(out.size());
    i = close;
  }
  return Value::string(std::move(out));
}

Value join_method(const Value& self, const Call& c) {
  no_markup(self, "join");
  const auto a = bind(c, "join", {"iterable"});
  if (!a[0]) fail("join takes an argument");
  std::string out;
  size_t i = 0;
  for (const Value& v : iterate(*a[0])) {
    if (!v.is(K::string)) fail("join: sequence item {}: expected str instance, {} found", i, type_name(v));
    if (i++) out += self.str();
    out += v.str();
    ensure_room(out.size());
  }
  return Value::string(std::move(out));
}

Value replace_method(const Value& self, const Call& c) {
  no_markup(self, "replace");
  const auto a = bind(c, "replace", {"old", "new", "count"});
  const std::string old = need_str(a[0], "replace"), repl = need_str(a[1], "replace");
  return Value::string(str_replace(self.str(), old, repl, opt_int(a[2], -1, "replace")));
}

Value count_method(const Value& self, const Call& c) {
  const auto a = bind(c, "count", {"sub"});
  const std::string sub = need_str(a[0], "count");
  if (sub.empty()) return Value::integer(code_points(self.str()) + 1);
  step(text_cost(self.str().size()));
  int64_t n = 0;
  for (size_t at = self.str().find(sub); at != std::string::npos; at = self.str().find(sub, at + sub.size())) ++n;
  return Value::integer(n);
}

const std::map<std::string_view, MethodFn> kStrMethods = {
    {"capitalize", [](const Value& s, const Call& c) { return case_method(s, c, Case::capitalize); }},
    {"count", count_method},
    {"endswith", [](const Value& s, const Call& c) { return affix_method(s, c, false); }},
    {"find", [](const Value& s, const Call& c) { return find_method(s, c, false); }},
    {"format", format_method},
    {"join", join_method},
    {"lower", [](const Value& s, const Call& c) { return case_method(s, c, Case::lower); }},
    {"lstrip", [](const Value& s, const Call& c) { return strip_method(s, c, true, false); }},
    {"replace", replace_method},
    {"rfind", [](const Value& s, const Call& c) { return find_method(s, c, true); }},
    {"rsplit", [](const Value& s, const Call& c) { return split_method(s, c, true); }},
    {"rstrip", [](const Value& s, const Call& c) { return strip_method(s, c, false, true); }},
    {"split", [](const Value& s, const Call& c) { return split_method(s, c, false); }},
    {"startswith", [](const Value& s, const Call& c) { return affix_method(s, c, true); }},
    {"strip", [](const Value& s, const Call& c) { return strip_method(s, c, true, true); }},
    {"title", [](const Value& s, const Call& c) { return case_method(s, c, Case::title); }},
    {"upper", [](const Value& s, const Call& c) { return case_method(s, c, Case::upper); }},
};

Value dict_view(const Value& self, const Call& c, Seq::Type type) {
  bind(c, "items/keys/values", {});
  std::vector<Value> out;
  for (const auto& [k, v] : self.dict().items) {
    if (type == Seq::Type::dict_keys) out.push_back(Value::string(k));
    else if (type == Seq::Type::dict_values) out.push_back(v);
    else out.push_back(make_seq({Value::string(k), v}, Seq::Type::tuple));
  }
  return make_seq(std::move(out), type);
}

Value dict_get(const Value& self, const Call& c) {
  const auto a = bind(c, "get", {"key", "default"});
  if (!a[0]) fail("get takes a key");
  if (a[0]->is(K::dict) || (a[0]->is(K::seq) && a[0]->seq().type == Seq::Type::list)) fail("unhashable type: '{}'", type_name(*a[0]));
  const Value* v = a[0]->is(K::string) ? self.dict().find(a[0]->str()) : nullptr;
  return v ? *v : a[1] ? *a[1] : Value::none();
}

Value seq_count(const Value& self, const Call& c) {
  const auto a = bind(c, "count", {"value"});
  if (!a[0]) fail("count takes an argument");
  return Value::integer(std::count_if(self.seq().items.begin(), self.seq().items.end(), [&](const Value& v) { return equal(v, *a[0]); }));
}

Value seq_index(const Value& self, const Call& c) {
  const auto a = bind(c, "index", {"value", "start", "stop"});
  if (!a[0] || a[1] || a[2]) fail("index takes one argument (start and stop are not supported)");
  const auto& items = self.seq().items;
  const auto it = std::find_if(items.begin(), items.end(), [&](const Value& v) { return equal(v, *a[0]); });
  if (it == items.end()) fail("{} is not in {}", repr(*a[0]), type_name(self));
  return Value::integer(it - items.begin());
}

const std::map<std::string_view, MethodFn> kSeqMethods = {{"count", seq_count}, {"index", seq_index}};

const std::map<std::string_view, MethodFn> kDictMethods = {
    {"get", dict_get},
    {"items", [](const Value& d, const Call& c) { return dict_view(d, c, Seq::Type::dict_items); }},
    {"keys", [](const Value& d, const Call& c) { return dict_view(d, c, Seq::Type::dict_keys); }},
    {"values", [](const Value& d, const Call& c) { return dict_view(d, c, Seq::Type::dict_values); }},
};

// Attributes Python has and Loom does not support: using them fails.
const std::set<std::string_view> kUnsupported[] = {
    // str
    {"casefold", "center", "encode", "expandtabs", "format_map", "index", "isalnum", "isalpha", "isascii",
     "isdecimal", "isdigit", "isidentifier", "islower", "isnumeric", "isprintable", "isspace", "istitle", "isupper",
     "ljust", "maketrans", "partition", "removeprefix", "removesuffix", "rindex", "rjust", "rpartition", "splitlines",
     "swapcase", "translate", "zfill"},
    {"copy", "fromkeys"},                                  // dict
    {"copy"},                                              // list
    {"start", "stop", "step"},                             // tuple, range
    {"as_integer_ratio", "bit_count", "bit_length", "conjugate", "denominator", "from_bytes", "fromhex", "hex",
     "imag", "is_integer", "numerator", "real", "to_bytes"},  // int, float
};
// Methods the immutable sandbox refuses (jinja2's modifies_known_mutable).
const std::set<std::string_view> kUnsafe[] = {
    {"clear", "pop", "popitem", "setdefault", "update"},                                  // dict
    {"append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort"},          // list
};

std::string object_type_repr(const Value& v) { return v.is(K::none) ? "None" : type_name(v) + " object"; }

Value bound(const Value& self, const std::string& name, MethodFn fn) {
  return Value::function(Function{name, false, [self, fn](const Call& c) { return fn(self, c); }});
}

Value unsupported(const Value& self, const std::string& name) {
  const std::string what = fmt::format("the attribute {} of {} is not supported", name, type_name(self));
  return Value::function(Function{name, false, [what](const Call&) -> Value { fail("{}", what); }});
}

// A method or attribute of obj, or nullopt when Python's object has none of that name.
std::optional<Value> attribute(const Value& obj, const std::string& name) {
  if (name.starts_with("_")) return std::nullopt;  // the sandbox hides them
  int unsupported_set = -1, unsafe_set = -1;
  const std::map<std::string_view, MethodFn>* methods = nullptr;
  switch (obj.kind()) {
    case K::string:
      methods = &kStrMethods;
      unsupported_set = 0;
      break;
    case K::dict:
      methods = &kDictMethods;
      unsupported_set = 1;
      unsafe_set = 0;
      break;
    case K::seq:
      if (obj.seq().type == Seq::Type::list) unsupported_set = 2, unsafe_set = 1;
      if (obj.seq().type == Seq::Type::tuple || obj.seq().type == Seq::Type::range) unsupported_set = 3;
      if (is_indexable(obj)) methods = &kSeqMethods;
      break;
    case K::boolean:
    case K::integer:
    case K::floating: unsupported_set = 4; break;
    case K::object:
      if (const Value* v = obj.object().attrs.find(name)) return *v;
      break;
    default: break;
  }
  if (methods)
    if (auto it = methods->find(name); it != methods->end()) return bound(obj, name, it->second);
  if (unsafe_set >= 0 && kUnsafe[unsafe_set].contains(name))
    return Value::undefined(fmt::format("access to attribute '{}' of '{}' object is unsafe.", name, type_name(obj)));
  if (unsupported_set >= 0 && kUnsupported[unsupported_set].contains(name)) return unsupported(obj, name);
  return std::nullopt;
}

// Python's slice.indices(): the positions obj[start:stop:step] takes from a sequence of n.
std::vector<size_t> slice_positions(int64_t n, const std::optional<Value>& start, const std::optional<Value>& stop, int64_t step) {
  auto bound = [&](const std::optional<Value>& v, int64_t fallback) {
    if (!v || v->is(K::none)) return fallback;
    int64_t i = v->integer();
    if (i < 0) i = std::max<int64_t>(i + n, step < 0 ? -1 : 0);
    else if (i >= n) i = step < 0 ? n - 1 : n;
    return i;
  };
  std::vector<size_t> out;
  const int64_t to = bound(stop, step < 0 ? -1 : n);
  for (int64_t i = bound(start, step < 0 ? n - 1 : 0); step > 0 ? i < to : i > to; i += step) out.push_back(size_t(i));
  return out;
}

}  // namespace

std::optional<std::string> opt_str(const std::optional<Value>& v, std::string_view what) {
  if (!v || v->is(K::none)) return std::nullopt;
  if (!v->is(K::string)) fail("{}: expected a str argument, not {}", what, type_name(*v));
  return v->str();
}

std::string need_str(const std::optional<Value>& v, std::string_view what) {
  auto s = opt_str(v, what);
  if (!s) fail("{}: missing a str argument", what);
  return *s;
}

int64_t opt_int(const std::optional<Value>& v, int64_t fallback, std::string_view what) {
  if (!v || v->is(K::none)) return fallback;
  if (!v->is_int()) fail("{}: expected an int argument, not {}", what, type_name(*v));
  return v->integer();
}

Value get_attr(const Value& obj, const std::string& name) {
  if (obj.is(K::undefined)) fail("{}", obj.hint());
  if (auto v = attribute(obj, name)) return *v;
  if (obj.is(K::dict))
    if (const Value* v = obj.dict().find(name)) return *v;
  return Value::undefined(fmt::format("'{}' has no attribute '{}'", object_type_repr(obj), name));
}

Value get_item(const Value& obj, const Value& key) {
  if (obj.is(K::undefined)) fail("{}", obj.hint());
  if (obj.is(K::dict) && key.is(K::string))
    if (const Value* v = obj.dict().find(key.str())) return *v;
  if ((obj.is(K::string) || is_indexable(obj)) && key.is_int()) {
    const int64_t n = length(obj);
    const int64_t i = key.integer() < 0 ? key.integer() + n : key.integer();
    if (i >= 0 && i < n) {
      if (obj.is(K::seq)) return obj.seq().items[size_t(i)];
      return like(obj, to_utf8(to_u32(obj.str()).substr(size_t(i), 1)));
    }
  }
  if (key.is(K::string)) {
    if (auto v = attribute(obj, key.str())) return *v;
    return Value::undefined(fmt::format("'{}' has no attribute '{}'", object_type_repr(obj), key.str()));
  }
  return Value::undefined(fmt::format("{} has no element {}", object_type_repr(obj), repr(key)));
}

// jinja2 compiles a slice to a plain Python subscript, so what fails fails (no undefined).
Value get_slice(const Value& obj, const std::optional<Value>& start, const std::optional<Value>& stop,
                const std::optional<Value>& step) {
  if (obj.is(K::undefined)) fail("{}", obj.hint());
  for (const auto* b : {&start, &stop, &step})
    if (*b && !(*b)->is_int() && !(*b)->is(K::none)) fail("slice indices must be integers or None");
  const int64_t by = step && step->is_int() ? step->integer() : 1;
  if (by == 0) fail("slice step cannot be zero");
  if (obj.is(K::string)) {
    const std::u32string u = to_u32(obj.str());
    std::u32string out;
    for (size_t i : slice_positions(int64_t(u.size()), start, stop, by)) out += u[i];
    return like(obj, to_utf8(out));
  }
  if (is_indexable(obj)) {
    std::vector<Value> out;
    for (size_t i : slice_positions(int64_t(obj.seq().items.size()), start, stop, by)) out.push_back(obj.seq().items[i]);
    return make_seq(std::move(out), obj.seq().type);
  }
  fail("'{}' object is not subscriptable with a slice", type_name(obj));
}

}  // namespace loom::chat
