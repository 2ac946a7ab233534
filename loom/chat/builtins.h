// What a template can reach besides operators: attribute and item access with the methods of
// str and dict (methods.cpp), jinja2's filters and tests and the globals of transformers'
// environment (filters.cpp). Sandboxed as jinja2's ImmutableSandboxedEnvironment: methods that
// mutate (list.append, dict.update, ...) are unsafe and fail when called.
#pragma once

#include <optional>
#include <string>

#include "loom/chat/value.h"

namespace loom::chat {

// obj.name: a method or attribute first, then obj['name'] (jinja2's sandboxed getattr).
Value get_attr(const Value& obj, const std::string& name);
// obj[key]: the item first, then a method or attribute when key is a str.
Value get_item(const Value& obj, const Value& key);
// obj[start:stop:step] of a str, list or tuple; an absent bound is nullopt.
Value get_slice(const Value& obj, const std::optional<Value>& start, const std::optional<Value>& stop,
                const std::optional<Value>& step);

// Whether jinja2 has a filter / test of this name (Loom may still not support it).
bool is_jinja_filter(const std::string& name);
bool is_jinja_test(const std::string& name);
// value | name(args); fails for a filter Loom does not support.
Value apply_filter(const std::string& name, const Value& value, const Call& args);
// value is name(args)
bool apply_test(const std::string& name, const Value& value, const Call& args);

// Arguments of methods and filters: a str (nullopt when absent or None), a str that must be
// given, an int (fallback when absent or None).
std::optional<std::string> opt_str(const std::optional<Value>& v, std::string_view what);
std::string need_str(const std::optional<Value>& v, std::string_view what);
int64_t opt_int(const std::optional<Value>& v, int64_t fallback, std::string_view what);

// range, dict, namespace, raise_exception, strftime_now (and jinja2's lipsum, cycler, joiner,
// which fail when called).
Dict make_globals();

}  // namespace loom::chat
