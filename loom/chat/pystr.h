// Python's str semantics on UTF-8 text: code points, whitespace (str.isspace), repr(), float
// repr(), json.dumps of a str, and the str methods chat templates call (strip, split, replace,
// find, Unicode case mapping). Text is valid UTF-8 (Template and the context are checked).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace loom::chat {

bool is_utf8(std::string_view s);
std::u32string to_u32(std::string_view s);
std::string to_utf8(std::u32string_view s);
void append_utf8(std::string& out, char32_t c);
int64_t code_points(std::string_view s);  // len(s)

bool is_space(char32_t c);  // str.isspace()
// From unicode_tables.cpp: str.isprintable(), Unicode's Cased and Case_Ignorable properties.
bool is_printable(char32_t c);
bool is_cased(char32_t c);
bool is_case_ignorable(char32_t c);

// Appends the decimal digits at s[i...] to out, skipping single underscores between digits
// (Python's number syntax), and moves i past them; returns whether there was a digit.
bool scan_digits(std::string_view s, size_t& i, std::string& out);

std::string str_repr(std::string_view s);
std::string float_repr(double x);
// json.dumps(s, ensure_ascii=ensure_ascii).
std::string json_quote(std::string_view s, bool ensure_ascii);

// s.strip(chars) / lstrip / rstrip; chars nullopt strips whitespace.
std::string str_strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right);
// s.split(sep, maxsplit), or s.rsplit when from_right; sep nullopt splits at runs of whitespace.
std::vector<std::string> str_split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit, bool from_right);
// s.replace(old, repl, count), count < 0 for all.
std::string str_replace(std::string_view s, std::string_view old, std::string_view repl, int64_t count);
// s.find(sub) / s.rfind(sub): a code point index, or -1.
int64_t str_find(std::string_view s, std::string_view sub, bool from_right);

// s.upper(), s.lower(), s.title(), s.capitalize(): Python's full case mappings, with the final
// sigma of lower.
enum class Case { upper, lower, title, capitalize };
std::string change_case(std::string_view s, Case c);
// One code point's full mapping to upper, lower or title case (unicode_tables.cpp).
std::u32string map_case(char32_t c, Case to);

}  // namespace loom::chat
