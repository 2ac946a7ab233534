// Python's str semantics on UTF-8 text (see pystr.h).
#include "loom/chat/pystr.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include "loom/chat/value.h"

namespace loom::chat {

namespace {

// Byte length of the UTF-8 sequence starting with lead byte b.
size_t seq_length(unsigned char b) { return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4; }

void append_hex(std::string& out, uint32_t v, int digits) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = digits - 1; i >= 0; --i) out += kHex[(v >> (4 * i)) & 0xF];
}

bool in_chars(char32_t c, const std::optional<std::u32string>& chars) {
  return chars ? chars->find(c) != std::u32string::npos : is_space(c);
}

// Splits at runs of whitespace (str.split() without sep), from the left.
std::vector<std::string> split_whitespace(std::u32string_view s, int64_t maxsplit) {
  std::vector<std::string> out;
  size_t i = 0;
  while (true) {
    while (i < s.size() && is_space(s[i])) ++i;
    if (i == s.size()) break;
    if (maxsplit >= 0 && int64_t(out.size()) == maxsplit) {  // the rest, trailing whitespace kept
      out.push_back(to_utf8(s.substr(i)));
      break;
    }
    size_t j = i;
    while (j < s.size() && !is_space(s[j])) ++j;
    out.push_back(to_utf8(s.substr(i, j - i)));
    i = j;
  }
  return out;
}

// Python's Final_Sigma rule for the capital sigma at u[i]: after a cased letter and not before
// one, case-ignorable code points between not counting.
bool final_sigma(std::u32string_view u, size_t i) {
  size_t j = i;
  while (j > 0 && is_case_ignorable(u[j - 1])) --j;
  if (j == 0 || !is_cased(u[j - 1])) return false;
  for (j = i + 1; j < u.size() && is_case_ignorable(u[j]); ++j) {
  }
  return j == u.size() || !is_cased(u[j]);
}

}  // namespace

bool is_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      ++i;
      continue;
    }
    if (b < 0xC2 || b > 0xF4) return false;
    const size_t n = seq_length(b);
    if (i + n > s.size()) return false;
    char32_t c = b & (0xFF >> (n + 1));
    for (size_t k = 1; k < n; ++k) {
      const auto t = static_cast<unsigned char>(s[i + k]);
      if ((t & 0xC0) != 0x80) return false;
      c = (c << 6) | (t & 0x3F);
    }
    if ((n == 3 && c < 0x800) || (n == 4 && (c < 0x10000 || c > 0x10FFFF)) || (c >= 0xD800 && c <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

std::u32string to_u32(std::string_view s) {
  step(text_cost(s.size()));
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    const size_t n = seq_length(b);
    char32_t c = n == 1 ? b : b & (0xFF >> (n + 1));
    for (size_t k = 1; k < n && i + k < s.size(); ++k) c = (c << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    out += c;
    i += n;
  }
  return out;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += char(c);
  } else if (c < 0x800) {
    out += char(0xC0 | (c >> 6));
    out += char(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += char(0xE0 | (c >> 12));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  } else {
    out += char(0xF0 | (c >> 18));
    out += char(0x80 | ((c >> 12) & 0x3F));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  }
}

std::string to_utf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append_utf8(out, c);
  return out;
}

int64_t code_points(std::string_view s) {
  int64_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool scan_digits(std::string_view s, size_t& i, std::string& out) {
  auto digit = [&](size_t k) { return k < s.size() && s[k] >= '0' && s[k] <= '9'; };
  bool any = false;
  while (digit(i) || (any && i < s.size() && s[i] == '_' && digit(i + 1))) {
    if (s[i] != '_') out += s[i];
    any = true;
    ++i;
  }
  return any;
}

std::string str_repr(std::string_view s) {
  const std::u32string u = to_u32(s);
  const char quote = (u.find(U'\'') != std::u32string::npos && u.find(U'"') == std::u32string::npos) ? '"' : '\'';
  std::string out(1, quote);
  for (char32_t c : u) {
    if (c == char32_t(quote) || c == U'\\') {
      out += '\\';
      out += char(c);
    } else if (c == U'\t') {
      out += "\\t";
    } else if (c == U'\n') {
      out += "\\n";
    } else if (c == U'\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7F) {
      out += "\\x";
      append_hex(out, c, 2);
    } else if (c < 0x7F || is_printable(c)) {
      append_utf8(out, c);
    } else {
      out += c <= 0xFF ? "\\x" : c <= 0xFFFF ? "\\u" : "\\U";
      append_hex(out, c, c <= 0xFF ? 2 : c <= 0xFFFF ? 4 : 8);
    }
  }
  out += quote;
  return out;
}

// Python's repr: the shortest digits that round-trip, positional for 1e-4 <= |x| < 1e16.
std::string float_repr(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, x, std::chars_format::scientific);
  const std::string_view sci(buf, size_t(res.ptr - buf));  // [-]d[.ddd]e±XX
  const size_t e = sci.find('e');
  const bool negative = sci[0] == '-';
  std::string digits;
  for (char c : sci.substr(0, e))
    if (c != '-' && c != '.') digits += c;
  const int exp = std::atoi(std::string(sci.substr(e + 1)).c_str());
  const int point = exp + 1;  // the value is 0.digits × 10^point
  const int n = int(digits.size());
  if (point <= -4 || point > 16)
    return fmt::format("{}{}{}{}e{}{:02d}", negative ? "-" : "", digits[0], n > 1 ? "." : "", digits.substr(1),
                       exp < 0 ? '-' : '+', std::abs(exp));
  if (point <= 0) return fmt::format("{}0.{}{}", negative ? "-" : "", std::string(size_t(-point), '0'), digits);
  if (point >= n) return fmt::format("{}{}{}.0", negative ? "-" : "", digits, std::string(size_t(point - n), '0'));
  return fmt::format("{}{}.{}", negative ? "-" : "", digits.substr(0, size_t(point)), digits.substr(size_t(point)));
}

std::string json_quote(std::string_view s, bool ensure_ascii) {
  std::string out = "\"";
  for (char32_t c : to_u32(s)) {
    switch (c) {
      case U'"': out += "\\\""; break;
      case U'\\': out += "\\\\"; break;
      case U'\n': out += "\\n"; break;
      case U'\r': out += "\\r"; break;
      case U'\t': out += "\\t"; break;
      case U'\b': out += "\\b"; break;
      case U'\f': out += "\\f"; break;
      default:
        if (c < 0x20 || (ensure_ascii && c > 0x7E)) {
          if (c > 0xFFFF) {  // a surrogate pair
            out += "\\u";
            append_hex(out, 0xD800 + ((c - 0x10000) >> 10), 4);
            c = 0xDC00 + ((c - 0x10000) & 0x3FF);
          }
          out += "\\u";
          append_hex(out, c, 4);
        } else {
          append_utf8(out, c);
        }
    }
  }
  return out + "\"";
}

std::string str_strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right) {
  const std::u32string u = to_u32(s);
  const std::optional<std::u32string> set = chars ? std::optional(to_u32(*chars)) : std::nullopt;
  size_t begin = 0, end = u.size();
  while (left && begin < end && in_chars(u[begin], set)) ++begin;
  while (right && end > begin && in_chars(u[end - 1], set)) --end;
  return to_utf8(std::u32string_view(u).substr(begin, end - begin));
}

std::vector<std::string> str_split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit, bool from_right) {
  if (!sep) {
    if (!from_right) return split_whitespace(to_u32(s), maxsplit);
    // rsplit is split on the reversed text, with each piece and the order reversed back.
    std::u32string u = to_u32(s);
    std::reverse(u.begin(), u.end());
    std::vector<std::string> out;
    for (const std::string& piece : split_whitespace(u, maxsplit)) {
      std::u32string p = to_u32(piece);
      std::reverse(p.begin(), p.end());
      out.insert(out.begin(), to_utf8(p));
    }
    return out;
  }
  if (sep->empty()) fail("split: empty separator");
  std::vector<std::string> out;
  std::string_view rest = s;
  for (int64_t n = 0; maxsplit < 0 || n < maxsplit; ++n) {
    const size_t at = from_right ? rest.rfind(*sep) : rest.find(*sep);
    if (at == std::string_view::npos) break;
    if (from_right) {
      out.emplace(out.begin(), rest.substr(at + sep->size()));
      rest = rest.substr(0, at);
    } else {
      out.emplace_back(rest.substr(0, at));
      rest = rest.substr(at + sep->size());
    }
  }
  if (from_right) out.emplace(out.begin(), rest);
  else out.emplace_back(rest);
  return out;
}

std::string str_replace(std::string_view s, std::string_view old, std::string_view repl, int64_t count) {
  const size_t places = old.empty() ? size_t(code_points(s)) + 1 : s.size() / old.size();
  ensure_room(s.size() + places * repl.size());  // at most this long
  std::string out;
  if (old.empty()) {  // repl goes before every character and at the end
    const std::u32string u = to_u32(s);
    int64_t n = 0;
    for (size_t i = 0; i <= u.size(); ++i) {
      if (count < 0 || n++ < count) out += repl;
      if (i < u.size()) append_utf8(out, u[i]);
    }
    return out;
  }
  size_t pos = 0;
  for (int64_t n = 0; count < 0 || n < count; ++n) {
    const size_t at = s.find(old, pos);
    if (at == std::string_view::npos) break;
    out.append(s.substr(pos, at - pos)).append(repl);
    pos = at + old.size();
  }
  return out.append(s.substr(pos));
}

int64_t str_find(std::string_view s, std::string_view sub, bool from_right) {
  step(text_cost(s.size()));
  const size_t at = from_right ? s.rfind(sub) : s.find(sub);
  return at == std::string_view::npos ? -1 : code_points(s.substr(0, at));
}

std::string change_case(std::string_view s, Case mode) {
  const std::u32string u = to_u32(s);
  std::u32string out;
  bool previous_is_cased = false;
  for (size_t i = 0; i < u.size(); ++i) {
    Case to = mode;
    if (mode == Case::title) to = previous_is_cased ? Case::lower : Case::title;
    if (mode == Case::capitalize) to = i == 0 ? Case::title : Case::lower;
    if (to == Case::lower && u[i] == 0x3A3) out += final_sigma(u, i) ? U'\u03C2' : U'\u03C3';
    else out += map_case(u[i], to);
    previous_is_cased = is_cased(u[i]);
  }
  return to_utf8(out);
}

}  // namespace loom::chat
