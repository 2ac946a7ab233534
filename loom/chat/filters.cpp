// jinja2's filters and tests, transformers' tojson, and the globals of the chat-template
// environment (see builtins.h).
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <limits>
#include <map>
#include <set>
#include <unordered_set>

#include "loom/chat/builtins.h"
#include "loom/chat/pystr.h"

namespace loom::chat {

namespace {

using K = Value::Kind;
using FilterFn = Value (*)(const Value& v, const Call& c);
using TestFn = bool (*)(const Value& v, const Call& c);

Value empty_iterator() { return make_seq({}, Seq::Type::iterator); }

// jinja2's attribute paths ("function.name", "0"): items looked up one after another; an
// undefined step becomes `fallback` when one is given.
Value lookup_path(Value item, const Value& path, const std::optional<Value>& fallback = std::nullopt) {
  std::vector<Value> parts{path};
  if (path.is(K::string)) {
    parts.clear();
    for (const std::string& p : str_split(path.str(), std::string("."), -1, false)) {
      const bool digits = !p.empty() && p.find_first_not_of("0123456789") == std::string::npos;
      parts.push_back(digits ? Value::integer(std::stoll(p.substr(0, 18))) : Value::string(p));
    }
  }
  for (const Value& part : parts) {
    item = get_item(item, part);
    if (fallback && !fallback->is(K::none) && item.is(K::undefined)) item = *fallback;
  }
  return item;
}

Value ignore_case(const Value& v) { return v.is(K::string) ? Value::string(change_case(v.str(), Case::lower)) : v; }

// Python's sorted(): stable (a merge sort), comparing keys with `<`; reverse keeps equal items in order.
std::vector<Value> sorted(const std::vector<Value>& items, const std::vector<Value>& keys, bool reverse) {
  std::vector<size_t> order(items.size()), merged(items.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  auto before = [&](size_t a, size_t b) {
    step();
    return reverse ? compare("<", keys[b], keys[a]) : compare("<", keys[a], keys[b]);
  };
  for (size_t width = 1; width < order.size(); width *= 2) {
    for (size_t lo = 0; lo < order.size(); lo += 2 * width) {
      const size_t mid = std::min(lo + width, order.size()), hi = std::min(lo + 2 * width, order.size());
      size_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi) merged[k++] = before(order[j], order[i]) ? order[j++] : order[i++];
      while (i < mid) merged[k++] = order[i++];
      while (j < hi) merged[k++] = order[j++];
    }
    order.swap(merged);
  }
  std::vector<Value> out;
  for (size_t i : order) out.push_back(items[i]);
  return out;
}

// A key equal for values Python hashes as equal (1, 1.0 and True); fails for unhashable ones.
std::string hash_key(const Value& v) {
  switch (v.kind()) {
    case K::undefined: return "U";
    case K::none: return "N";
    case K::boolean:
    case K::integer: return "i" + std::to_string(v.integer());
    case K::floating: {
      const double f = v.number();
      if (f == std::floor(f) && std::abs(f) < 9e18) return "i" + std::to_string(int64_t(f));
      return "f" + float_repr(f);
    }
    case K::string: return "s" + v.str();
    case K::seq:
      if (v.seq().type == Seq::Type::tuple) {
        std::string key = "t(";
        for (const Value& e : v.seq().items) key += hash_key(e) + ",";
        return key + ")";
      }
      break;
    default: break;
  }
  fail("unhashable type: '{}'", type_name(v));
}

Value f_default(const Value& v, const Call& c) {
  const auto a = bind(c, "default", {"default_value", "boolean"});
  const bool use = v.is(K::undefined) || (a[1] && truthy(*a[1]) && !truthy(v));
  return use ? a[0].value_or(Value::string("")) : v;
}

Value f_trim(const Value& v, const Call& c) {
  const auto a = bind(c, "trim", {"chars"});
  const auto chars = opt_str(a[0], "trim");
  if (chars && v.markup()) fail("trim with chars of a |safe string is not supported");
  return Value::string(str_strip(to_str(v), chars, true, true), v.markup());
}

Value case_filter(const Value& v, const Call& c, Case mode) {
  bind(c, "upper/lower/capitalize", {});
  return Value::string(change_case(to_str(v), mode), v.markup());
}

// jinja2's title: the text split into runs of -, whitespace, (, {, [, < and runs of the rest;
// each run's first character upper case, the others lower.
Value f_title(const Value& v, const Call& c) {
  bind(c, "title", {});
  const std::u32string u = to_u32(to_str(v));
  auto separator = [](char32_t ch) { return is_space(ch) || std::u32string_view(U"-({[<").find(ch) != std::u32string_view::npos; };
  std::string out;
  for (size_t i = 0, j = 0; i < u.size(); i = j) {
    for (j = i + 1; j < u.size() && separator(u[j]) == separator(u[i]);) ++j;
    out += change_case(to_utf8(u.substr(i, 1)), Case::upper);
    out += change_case(to_utf8(u.substr(i + 1, j - i - 1)), Case::lower);
  }
  return Value::string(std::move(out));
}

Value f_replace(const Value& v, const Call& c) {
  const auto a = bind(c, "replace", {"old", "new", "count"});
  if (!a[0] || !a[1]) fail("replace takes old and new");
  const std::string s = to_str(v), old = to_str(*a[0]), repl = to_str(*a[1]);
  return Value::string(str_replace(s, old, repl, opt_int(a[2], -1, "replace")));
}

Value f_length(const Value& v, const Call& c) {
  bind(c, "length", {});
  return Value::integer(length(v));
}

Value f_first(const Value& v, const Call& c) {
  bind(c, "first", {});
  if (v.is(K::seq) && v.seq().type == Seq::Type::iterator) {
    const Seq& s = v.seq();
    if (s.consumed < s.items.size()) return s.items[s.consumed++];
  } else if (auto items = iterate(v); !items.empty()) {
    return items.front();
  }
  return Value::undefined("No first item, sequence was empty.");
}

Value f_last(const Value& v, const Call& c) {
  bind(c, "last", {});
  if (v.is(K::seq) && v.seq().type == Seq::Type::iterator) fail("'generator' object is not reversible");
  const auto items = iterate(v);
  return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
}

Value f_join(const Value& v, const Call& c) {
  const auto a = bind(c, "join", {"d", "attribute"});
  const std::string sep = a[0] ? to_str(*a[0]) : "";
  std::string out;
  bool first = true;
  for (const Value& item : iterate(v)) {
    if (!std::exchange(first, false)) out += sep;
    out += to_str(a[1] && !a[1]->is(K::none) ? lookup_path(item, *a[1]) : item);
    ensure_room(out.size());
  }
  return Value::string(std::move(out));
}

Value f_list(const Value& v, const Call& c) {
  bind(c, "list", {});
  return make_seq(iterate(v));
}

Value f_string(const Value& v, const Call& c) {
  bind(c, "string", {});
  return v.is(K::string) ? v : Value::string(to_str(v));
}

// Python's int(str): whitespace around, a sign, decimal digits.
std::optional<int64_t> parse_int(std::string_view text) {
  const std::string s = str_strip(text, std::nullopt, true, true);
  size_t i = 0;
  std::string digits;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) digits += s[i++];
  if (!scan_digits(s, i, digits) || i != s.size()) return std::nullopt;
  errno = 0;
  const long long v = std::strtoll(digits.c_str(), nullptr, 10);
  if (errno == ERANGE) fail("int: {} does not fit 64 bits", s);
  return v;
}

// Python's float(str): whitespace around, underscores between digits, inf/infinity/nan.
std::optional<double> parse_float(std::string_view text) {
  const std::string s = str_strip(text, std::nullopt, true, true);
  std::string clean;
  size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) clean += s[i++];
  std::string word;
  for (char ch : s.substr(i)) word += char(std::tolower(static_cast<unsigned char>(ch)));
  if (word == "inf" || word == "infinity" || word == "nan") {
    const double x = word == "nan" ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
    return clean == "-" ? -x : x;
  }
  auto digits = [&] { return scan_digits(s, i, clean); };
  bool any = digits();
  if (i < s.size() && s[i] == '.') {
    clean += s[i++];
    any = digits() || any;
  }
  if (!any) return std::nullopt;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    clean += s[i++];
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) clean += s[i++];
    if (!digits()) return std::nullopt;
  }
  if (i != s.size()) return std::nullopt;
  return std::strtod(clean.c_str(), nullptr);  // Loom never changes the C locale
}

// int(x) of a float: truncates; inf fails as Python's OverflowError does.
std::optional<int64_t> truncate(double f) {
  if (std::isnan(f)) return std::nullopt;
  if (!(std::abs(f) < 9.2e18)) fail("int: cannot convert {} to a 64-bit integer", float_repr(f));
  return int64_t(f);
}

Value f_int(const Value& v, const Call& c) {
  const auto a = bind(c, "int", {"default", "base"});
  if (a[1] && !(a[1]->is_int() && a[1]->integer() == 10)) fail("int with a base other than 10 is not supported");
  if (v.is(K::undefined)) fail("{}", v.hint());
  std::optional<int64_t> i;
  if (v.is_int()) i = v.integer();
  if (v.is(K::floating)) i = truncate(v.number());
  if (v.is(K::string)) {  // "42.23" | int is 42, as in jinja2
    i = parse_int(v.str());
    if (!i)
      if (const auto f = parse_float(v.str())) i = truncate(*f);
  }
  return i ? Value::integer(*i) : a[0].value_or(Value::integer(0));
}

Value f_float(const Value& v, const Call& c) {
  const auto a = bind(c, "float", {"default"});
  if (v.is(K::undefined)) fail("{}", v.hint());
  if (v.is_number()) return Value::floating(v.number());
  if (v.is(K::string))
    if (const auto f = parse_float(v.str())) return Value::floating(*f);
  return a[0].value_or(Value::floating(0.0));
}

Value f_abs(const Value& v, const Call& c) {
  bind(c, "abs", {});
  if (!v.is_number()) fail("bad operand type for abs(): '{}'", type_name(v));
  if (v.is(K::floating)) return Value::floating(std::abs(v.number()));
  return v.integer() < 0 ? unary('-', v) : Value::integer(v.integer());
}

Value f_items(const Value& v, const Call& c) {
  bind(c, "items", {});
  if (v.is(K::undefined)) return empty_iterator();
  if (!v.is(K::dict)) fail("Can only get item pairs from a mapping.");
  std::vector<Value> out;
  for (const auto& [k, e] : v.dict().items) out.push_back(make_seq({Value::string(k), e}, Seq::Type::tuple));
  return make_seq(std::move(out), Seq::Type::iterator);
}

Value f_reverse(const Value& v, const Call& c) {
  bind(c, "reverse", {});
  if (v.is(K::string)) {
    std::u32string u = to_u32(v.str());
    std::reverse(u.begin(), u.end());
    return Value::string(to_utf8(u), v.markup());
  }
  const bool iterator = v.is(K::seq) && v.seq().type == Seq::Type::iterator;
  std::vector<Value> items = iterate(v);
  std::reverse(items.begin(), items.end());
  return make_seq(std::move(items), iterator ? Seq::Type::list : Seq::Type::iterator);
}

Value f_safe(const Value& v, const Call& c) {
  bind(c, "safe", {});
  return Value::string(to_str(v), true);
}

// select / reject / selectattr / rejectattr.
Value filter_items(const Value& v, const Call& c, bool keep, bool by_attribute) {
  const size_t off = by_attribute ? 1 : 0;
  if (c.args.size() < off) fail("selectattr/rejectattr: missing the attribute name");
  if (!truthy(v)) return empty_iterator();
  Call test;
  if (c.args.size() > off) {
    test.args.assign(c.args.begin() + std::ptrdiff_t(off) + 1, c.args.end());
    test.kwargs = c.kwargs;
  }
  std::vector<Value> out;
  for (const Value& item : iterate(v)) {
    const Value x = by_attribute ? lookup_path(item, c.args[0]) : item;
    const bool pass = c.args.size() > off ? apply_test(need_str(c.args[off], "select"), x, test) : truthy(x);
    if (pass == keep) out.push_back(item);
  }
  return make_seq(std::move(out), Seq::Type::iterator);
}

Value f_map(const Value& v, const Call& c) {
  std::optional<Value> attribute, fallback;
  Call filter;
  if (c.args.empty()) {
    const auto a = bind(c, "map", {"attribute", "default"});
    if (!a[0]) fail("map requires a filter argument");
    attribute = a[0];
    fallback = a[1];
  } else {
    filter.args.assign(c.args.begin() + 1, c.args.end());
    filter.kwargs = c.kwargs;
  }
  if (!truthy(v)) return empty_iterator();
  std::vector<Value> out;
  for (const Value& item : iterate(v))
    out.push_back(attribute ? lookup_path(item, *attribute, fallback) : apply_filter(need_str(c.args[0], "map"), item, filter));
  return make_seq(std::move(out), Seq::Type::iterator);
}

Value f_dictsort(const Value& v, const Call& c) {
  const auto a = bind(c, "dictsort", {"case_sensitive", "by", "reverse"});
  if (!v.is(K::dict)) fail("dictsort: expected a dict, not {}", type_name(v));
  const std::string by = opt_str(a[1], "dictsort").value_or("key");
  if (by != "key" && by != "value") fail("You can only sort by either \"key\" or \"value\"");
  std::vector<Value> items, keys;
  for (const auto& [k, e] : v.dict().items) {
    items.push_back(make_seq({Value::string(k), e}, Seq::Type::tuple));
    const Value key = by == "key" ? Value::string(k) : e;
    keys.push_back(a[0] && truthy(*a[0]) ? key : ignore_case(key));
  }
  return make_seq(sorted(items, keys, a[2] && truthy(*a[2])));
}

Value f_sort(const Value& v, const Call& c) {
  const auto a = bind(c, "sort", {"reverse", "case_sensitive", "attribute"});
  const std::vector<Value> items = iterate(v);
  std::vector<Value> keys;
  for (const Value& item : items) {
    std::vector<Value> key;  // one entry per comma-separated attribute
    const auto attrs = a[2] && a[2]->is(K::string) ? str_split(a[2]->str(), std::string(","), -1, false) : std::vector<std::string>{""};
    for (const std::string& attr : attrs) {
      const Value x = attr.empty() ? (a[2] && !a[2]->is(K::string) && !a[2]->is(K::none) ? lookup_path(item, *a[2]) : item)
                                   : lookup_path(item, Value::string(attr));
      key.push_back(a[1] && truthy(*a[1]) ? x : ignore_case(x));
    }
    keys.push_back(make_seq(std::move(key)));
  }
  return make_seq(sorted(items, keys, a[0] && truthy(*a[0])));
}

Value f_unique(const Value& v, const Call& c) {
  const auto a = bind(c, "unique", {"case_sensitive", "attribute"});
  std::unordered_set<std::string> seen;
  std::vector<Value> out;
  for (const Value& item : iterate(v)) {
    const Value x = a[1] && !a[1]->is(K::none) ? lookup_path(item, *a[1]) : item;
    if (seen.insert(hash_key(a[0] && truthy(*a[0]) ? x : ignore_case(x))).second) out.push_back(item);
  }
  return make_seq(std::move(out), Seq::Type::iterator);
}

struct JsonStyle {
  std::optional<std::string> indent;
  std::string item_sep = ", ", key_sep = ": ";
  bool sort_keys = false;
  bool ensure_ascii = false;
};

// json.dumps as transformers' tojson calls it.
void dump_json(std::string& out, const Value& v, const JsonStyle& st, int level) {
  ensure_room(out.size());
  const bool tuple_or_list = v.is(K::seq) && (v.seq().type == Seq::Type::list || v.seq().type == Seq::Type::tuple);
  switch (v.kind()) {
    case K::none: out += "null"; return;
    case K::boolean: out += v.boolean() ? "true" : "false"; return;
    case K::integer: out += std::to_string(v.integer()); return;
    case K::floating: {
      const double f = v.number();
      out += std::isnan(f) ? "NaN" : std::isinf(f) ? (f > 0 ? "Infinity" : "-Infinity") : float_repr(f);
      return;
    }
    case K::string: out += json_quote(v.str(), st.ensure_ascii); return;
    default: break;
  }
  if (!tuple_or_list && !v.is(K::dict)) fail("Object of type {} is not JSON serializable", type_name(v));
  std::vector<std::pair<std::string, Value>> entries;
  if (v.is(K::dict)) {
    entries = v.dict().items;
    if (st.sort_keys) std::stable_sort(entries.begin(), entries.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  } else {
    for (const Value& e : v.seq().items) entries.emplace_back("", e);
  }
  const char* brackets = v.is(K::dict) ? "{}" : "[]";
  out += brackets[0];
  if (entries.empty()) {
    out += brackets[1];
    return;
  }
  std::string outer, inner;  // the newlines and indents around the items and between them
  if (st.indent) {
    ensure_room(st.indent->size() * size_t(level + 1));
    outer = "\n";
    for (int i = 0; i < level; ++i) outer += *st.indent;
    inner = outer + *st.indent;
  }
  out += inner;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i) out += st.item_sep + inner;
    if (v.is(K::dict)) out += json_quote(entries[i].first, st.ensure_ascii) + st.key_sep;
    dump_json(out, entries[i].second, st, level + 1);
  }
  out += outer;
  out += brackets[1];
}

Value f_tojson(const Value& v, const Call& c) {
  const auto a = bind(c, "tojson", {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonStyle st;
  st.ensure_ascii = a[0] && truthy(*a[0]);
  st.sort_keys = a[3] && truthy(*a[3]);
  if (a[1] && !a[1]->is(K::none)) {
    if (a[1]->is(K::string)) st.indent = a[1]->str();
    else if (a[1]->is_int()) st.indent = std::string(size_t(std::clamp<int64_t>(a[1]->integer(), 0, 1 << 20)), ' ');
    else fail("tojson: indent must be an int or a str, not {}", type_name(*a[1]));
    st.item_sep = ",";
  }
  if (a[2] && !a[2]->is(K::none)) {
    const auto seps = iterate(*a[2]);
    if (seps.size() != 2 || !seps[0].is(K::string) || !seps[1].is(K::string)) fail("tojson: separators must be two strings");
    st.item_sep = seps[0].str();
    st.key_sep = seps[1].str();
  }
  std::string out;
  dump_json(out, v, st, 0);
  return Value::string(std::move(out));
}

const std::map<std::string_view, FilterFn> kFilters = {
    {"abs", f_abs},
    {"capitalize", [](const Value& v, const Call& c) { return case_filter(v, c, Case::capitalize); }},
    {"count", f_length},
    {"d", f_default},
    {"default", f_default},
    {"dictsort", f_dictsort},
    {"first", f_first},
    {"float", f_float},
    {"int", f_int},
    {"items", f_items},
    {"join", f_join},
    {"last", f_last},
    {"length", f_length},
    {"list", f_list},
    {"lower", [](const Value& v, const Call& c) { return case_filter(v, c, Case::lower); }},
    {"map", f_map},
    {"reject", [](const Value& v, const Call& c) { return filter_items(v, c, false, false); }},
    {"rejectattr", [](const Value& v, const Call& c) { return filter_items(v, c, false, true); }},
    {"replace", f_replace},
    {"reverse", f_reverse},
    {"safe", f_safe},
    {"select", [](const Value& v, const Call& c) { return filter_items(v, c, true, false); }},
    {"selectattr", [](const Value& v, const Call& c) { return filter_items(v, c, true, true); }},
    {"sort", f_sort},
    {"string", f_string},
    {"title", f_title},
    {"tojson", f_tojson},
    {"trim", f_trim},
    {"unique", f_unique},
    {"upper", [](const Value& v, const Call& c) { return case_filter(v, c, Case::upper); }},
};

const std::set<std::string_view> kJinjaFilters = {
    "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape",
    "filesizeformat", "first", "float", "forceescape", "format", "groupby", "indent", "int", "items", "join",
    "last", "length", "list", "lower", "map", "max", "min", "pprint", "random", "reject", "rejectattr", "replace",
    "reverse", "round", "safe", "select", "selectattr", "slice", "sort", "string", "striptags", "sum", "title",
    "tojson", "trim", "truncate", "unique", "upper", "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr"};

const Value& one_arg(const Call& c, std::string_view test) {
  if (c.args.size() + c.kwargs.size() != 1) fail("the test {} takes one argument", test);
  return c.args.empty() ? c.kwargs[0].second : c.args[0];
}

bool no_args(const Call& c, std::string_view test) {
  bind(c, test, {});
  return true;
}

// Python's str.islower / isupper: some cased letter, and none of the other case (ASCII only:
// Loom has no table of which letters count as lower or upper case).
bool is_case(const Value& v, Case mode) {
  bool any = false;
  for (char32_t c : to_u32(to_str(v))) {
    if (c > 0x7F && is_cased(c)) fail("the lower and upper tests of non-ASCII letters are not supported");
    const bool lower = c >= 'a' && c <= 'z', upper = c >= 'A' && c <= 'Z';
    if (mode == Case::lower ? upper : lower) return false;
    any = any || lower || upper;
  }
  return any;
}

const std::map<std::string_view, TestFn> kTests = {
    {"boolean", [](const Value& v, const Call& c) { return no_args(c, "boolean") && v.is(K::boolean); }},
    {"callable", [](const Value& v, const Call& c) { return no_args(c, "callable") && (v.is(K::function) || v.is(K::undefined) || (v.is(K::object) && v.object().type == "LoopContext")); }},
    {"defined", [](const Value& v, const Call& c) { return no_args(c, "defined") && !v.is(K::undefined); }},
    {"divisibleby", [](const Value& v, const Call& c) { return equal(arithmetic("%", v, one_arg(c, "divisibleby")), Value::integer(0)); }},
    {"escaped", [](const Value& v, const Call& c) { return no_args(c, "escaped") && v.markup(); }},
    {"even", [](const Value& v, const Call& c) { return no_args(c, "even") && equal(arithmetic("%", v, Value::integer(2)), Value::integer(0)); }},
    {"false", [](const Value& v, const Call& c) { return no_args(c, "false") && v.is(K::boolean) && !v.boolean(); }},
    {"float", [](const Value& v, const Call& c) { return no_args(c, "float") && v.is(K::floating); }},
    {"in", [](const Value& v, const Call& c) { return contains(one_arg(c, "in"), v); }},
    {"integer", [](const Value& v, const Call& c) { return no_args(c, "integer") && v.is(K::integer); }},
    {"iterable", [](const Value& v, const Call& c) { return no_args(c, "iterable") && (v.is(K::undefined) || v.is(K::string) || v.is(K::seq) || v.is(K::dict) || (v.is(K::object) && v.object().type == "LoopContext")); }},
    {"lower", [](const Value& v, const Call& c) { return no_args(c, "lower") && is_case(v, Case::lower); }},
    {"mapping", [](const Value& v, const Call& c) { return no_args(c, "mapping") && v.is(K::dict); }},
    {"none", [](const Value& v, const Call& c) { return no_args(c, "none") && v.is(K::none); }},
    {"number", [](const Value& v, const Call& c) { return no_args(c, "number") && v.is_number(); }},
    {"odd", [](const Value& v, const Call& c) { return no_args(c, "odd") && equal(arithmetic("%", v, Value::integer(2)), Value::integer(1)); }},
    {"sequence", [](const Value& v, const Call& c) { return no_args(c, "sequence") && (v.is(K::undefined) || v.is(K::string) || v.is(K::dict) || is_indexable(v)); }},
    {"string", [](const Value& v, const Call& c) { return no_args(c, "string") && v.is(K::string); }},
    {"true", [](const Value& v, const Call& c) { return no_args(c, "true") && v.is(K::boolean) && v.boolean(); }},
    {"undefined", [](const Value& v, const Call& c) { return no_args(c, "undefined") && v.is(K::undefined); }},
    {"upper", [](const Value& v, const Call& c) { return no_args(c, "upper") && is_case(v, Case::upper); }},
};

// Tests that are comparisons: name → operator.
const std::map<std::string_view, std::string_view> kCompareTests = {
    {"==", "=="}, {"eq", "=="}, {"equalto", "=="}, {"!=", "!="}, {"ne", "!="}, {"<", "<"}, {"lt", "<"},
    {"lessthan", "<"}, {"<=", "<="}, {"le", "<="}, {">", ">"}, {"gt", ">"}, {"greaterthan", ">"}, {">=", ">="}, {"ge", ">="}};

Value g_range(const Call& c) {
  if (c.args.empty() || c.args.size() > 3 || !c.kwargs.empty()) fail("range takes 1 to 3 positional arguments");
  for (const Value& a : c.args)
    if (!a.is_int()) fail("range: '{}' object cannot be interpreted as an integer", type_name(a));
  const int64_t start = c.args.size() == 1 ? 0 : c.args[0].integer();
  const int64_t stop = c.args.size() == 1 ? c.args[0].integer() : c.args[1].integer();
  const int64_t by = c.args.size() == 3 ? c.args[2].integer() : 1;
  if (by == 0) fail("range() arg 3 must not be zero");
  const double n = std::max(0.0, std::ceil((double(stop) - double(start)) / double(by)));
  if (n > 100000) fail("range too big: the sandbox allows 100000 items");  // jinja2's MAX_RANGE
  std::vector<Value> items;
  for (int64_t i = 0; i < int64_t(n); ++i) items.push_back(Value::integer(start + i * by));
  return make_seq(std::move(items), Seq::Type::range);
}

// dict(mapping, **kwargs) and namespace(mapping, **kwargs).
Dict dict_args(const Call& c, std::string_view fn) {
  if (c.args.size() > 1 || (c.args.size() == 1 && !c.args[0].is(K::dict))) fail("{} takes a dict and keyword arguments", fn);
  Dict d = c.args.empty() ? Dict{} : c.args[0].dict();
  for (const auto& [k, v] : c.kwargs) d.set(k, v);
  return d;
}

// datetime.now().strftime(fmt): %f is microseconds; a naive datetime's %z and %Z are empty.
Value g_strftime_now(const Call& c) {
  const auto a = bind(c, "strftime_now", {"format"});
  const std::string f = need_str(a[0], "strftime_now");
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() % 1000000;
  std::string expanded;
  for (size_t i = 0; i < f.size(); ++i) {
    if (f[i] != '%' || i + 1 == f.size()) {
      expanded += f[i];
    } else if (f[++i] == 'f') {
      expanded += fmt::format("{:06d}", micros);
    } else if (f[i] != 'z' && f[i] != 'Z') {
      expanded += '%';
      expanded += f[i];
    }
  }
  std::tm tm{};
  localtime_r(&t, &tm);
  std::string out;
  for (size_t cap = 64 + 8 * expanded.size(); !expanded.empty() && cap < (size_t(1) << 20); cap *= 2) {
    out.resize(cap);
    out.resize(std::strftime(out.data(), out.size(), expanded.c_str(), &tm));
    if (!out.empty()) break;  // 0: empty, or the buffer was too small
  }
  return Value::string(std::move(out));
}

Value unsupported_global(const std::string& name) {
  return Value::function(Function{name, false, [name](const Call&) -> Value { fail("the global {} is not supported", name); }});
}

}  // namespace

bool is_jinja_filter(const std::string& name) { return kJinjaFilters.contains(name); }

bool is_jinja_test(const std::string& name) {
  static const std::set<std::string_view> kOthers = {"filter", "test", "sameas"};
  return kTests.contains(name) || kCompareTests.contains(name) || kOthers.contains(name);
}

Value apply_filter(const std::string& name, const Value& value, const Call& args) {
  const auto it = kFilters.find(name);
  if (!is_jinja_filter(name)) fail("no filter named '{}'", name);
  if (it == kFilters.end()) fail("the filter {} is not supported", name);
  return it->second(value, args);
}

bool apply_test(const std::string& name, const Value& value, const Call& args) {
  if (const auto op = kCompareTests.find(name); op != kCompareTests.end()) return compare(op->second, value, one_arg(args, name));
  if (name == "sameas") {
    const Value& other = one_arg(args, name);
    if (other.is(K::none) || other.is(K::boolean))
      return value.kind() == other.kind() && (other.is(K::none) || value.boolean() == other.boolean());
    if (!other.identity()) fail("'sameas' with a {} is not supported", type_name(other));
    return value.identity() == other.identity();
  }
  const auto it = kTests.find(name);
  if (!is_jinja_test(name)) fail("no test named '{}'", name);
  if (it == kTests.end()) fail("the test {} is not supported", name);
  return it->second(value, args);
}

Dict make_globals() {
  Dict g;
  g.set("range", Value::function(Function{"range", false, g_range}));
  g.set("dict", Value::function(Function{"dict", false, [](const Call& c) { return Value::dict(dict_args(c, "dict")); }}));
  g.set("namespace", Value::function(Function{"namespace", false, [](const Call& c) {
                                                return Value::object("Namespace", dict_args(c, "namespace"));
                                              }}));
  g.set("raise_exception", Value::function(Function{"raise_exception", false, [](const Call& c) -> Value {
                                                      const auto a = bind(c, "raise_exception", {"message"});
                                                      fail("raise_exception: {}", a[0] ? to_str(*a[0]) : "");
                                                    }}));
  g.set("strftime_now", Value::function(Function{"strftime_now", false, g_strftime_now}));
  for (const char* name : {"lipsum", "cycler", "joiner"}) g.set(name, unsupported_global(name));
  return g;
}

}  // namespace loom::chat
