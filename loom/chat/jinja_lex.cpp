// The lexer of the Jinja subset: jinja2's lexer with default delimiters, trim_blocks and
// lstrip_blocks (see jinja.h). Tags: {{ }}, {% %}, {# #}; '-' after an opening or before a
// closing delimiter strips the whitespace beside it, '+' keeps it.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "loom/chat/jinja.h"
#include "loom/chat/pystr.h"

namespace loom::chat {

namespace {

constexpr std::string_view kOperators2[] = {"**", "//", "==", "!=", ">=", "<="};
constexpr std::string_view kOperators1 = "+-/*%~[](){}><=.:|,;";

// jinja2 reads the source with universal newlines and drops one trailing newline.
std::string normalize(std::string_view source) {
  std::string out;
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// Decodes the code point at s[i] and moves i past it.
char32_t next_code_point(std::string_view s, size_t& i) {
  size_t n = 1;
  while (i + n < s.size() && (static_cast<unsigned char>(s[i + n]) & 0xC0) == 0x80) ++n;
  const char32_t c = to_u32(s.substr(i, n))[0];
  i += n;
  return c;
}

// End of the run of (Unicode) whitespace starting at i.
size_t skip_space(std::string_view s, size_t i) {
  for (size_t j = i; j < s.size(); i = j)
    if (!is_space(next_code_point(s, j))) break;
  return i;
}

// Start of the run of whitespace that ends s.
size_t trailing_space(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    size_t k = start;
    if (!is_space(next_code_point(s, k))) break;
    end = start;
  }
  return end;
}

// The value of a string literal: jinja2 encodes the text with backslashreplace (non-ASCII
// characters become \x, \u, \U escapes) and decodes it with Python's unicode-escape.
std::string unescape(std::string_view raw, int line) {
  std::string ascii;
  for (char32_t c : to_u32(raw)) {
    if (c < 0x80) {
      ascii += char(c);
    } else {
      char buf[16];
      std::snprintf(buf, sizeof buf, c <= 0xFF ? "\\x%02x" : c <= 0xFFFF ? "\\u%04x" : "\\U%08x", unsigned(c));
      ascii += buf;
    }
  }
  std::string out;
  auto hex = [&](size_t& i, int digits) {
    char32_t c = 0;
    for (int k = 0; k < digits; ++k, ++i) {
      const char h = i < ascii.size() ? char(std::tolower(static_cast<unsigned char>(ascii[i]))) : 0;
      if (!std::isxdigit(static_cast<unsigned char>(h))) syntax_error(line, "a string literal has a truncated \\x, \\u or \\U escape");
      c = c * 16 + char32_t(h <= '9' ? h - '0' : h - 'a' + 10);
    }
    return c;
  };
  for (size_t i = 0; i < ascii.size();) {
    if (ascii[i] != '\\' || i + 1 == ascii.size()) {
      out += ascii[i++];
      continue;
    }
    const char e = ascii[i + 1];
    i += 2;
    char32_t c = 0;
    switch (e) {
      case '\n': continue;
      case 'a': c = 7; break;
      case 'b': c = 8; break;
      case 'f': c = 12; break;
      case 'n': c = 10; break;
      case 'r': c = 13; break;
      case 't': c = 9; break;
      case 'v': c = 11; break;
      case 'x': c = hex(i, 2); break;
      case 'u': c = hex(i, 4); break;
      case 'U': c = hex(i, 8); break;
      case 'N': syntax_error(line, "\\N{...} escapes in string literals are not supported");
      default:
        if (e >= '0' && e <= '7') {
          c = char32_t(e - '0');
          for (int k = 0; k < 2 && i < ascii.size() && ascii[i] >= '0' && ascii[i] <= '7'; ++k) c = c * 8 + char32_t(ascii[i++] - '0');
        } else if (e == '\\' || e == '\'' || e == '"') {
          c = char32_t(e);
        } else {
          out += '\\';
          out += e;
          continue;
        }
    }
    if (c > 0x10FFFF) syntax_error(line, "a string literal escapes a code point above U+10FFFF");
    if (c >= 0xD800 && c <= 0xDFFF) syntax_error(line, "a string literal escapes a surrogate, which is not supported");
    append_utf8(out, c);
  }
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string_view source) : s_(normalize(source)) {}

  std::vector<Token> run() {
    bool line_starting = true;
    while (pos_ < s_.size()) {
      size_t tag = pos_;
      while ((tag = s_.find('{', tag)) != std::string::npos && tag + 1 < s_.size() && std::string_view("{%#").find(s_[tag + 1]) == std::string_view::npos) ++tag;
      if (tag == std::string::npos || tag + 1 >= s_.size()) {
        push_text(s_.substr(pos_));
        break;
      }
      const char kind = s_[tag + 1];
      size_t after = tag + 2;
      const char sign = after < s_.size() && (s_[after] == '-' || s_[after] == '+') ? s_[after] : 0;
      if (sign) ++after;
      std::string text = s_.substr(pos_, tag - pos_);
      if (sign == '-') {
        text.resize(trailing_space(text));
      } else if (sign != '+' && kind != '{') {  // lstrip_blocks: a block or comment alone on its line
        const size_t line_start = text.rfind('\n') + 1;  // 0 when there is no newline
        if ((line_start > 0 || line_starting) && line_start < text.size() && skip_space(text, line_start) == text.size())
          text.resize(line_start);
      }
      push_text(text);
      line_ += count_lines(pos_, tag);
      pos_ = after;
      if (kind == '#') {
        comment();
      } else {
        push(kind == '%' ? Token::Type::block_begin : Token::Type::variable_begin);
        tag_body(kind == '%');
      }
      line_starting = s_[pos_ - 1] == '\n';
    }
    push(Token::Type::eof);
    return std::move(tokens_);
  }

 private:
  int count_lines(size_t from, size_t to) const { return int(std::count(s_.begin() + std::ptrdiff_t(from), s_.begin() + std::ptrdiff_t(to), '\n')); }

  void push(Token::Type type, std::string text = {}) {
    Token t;
    t.type = type;
    t.text = std::move(text);
    t.line = line_;
    tokens_.push_back(std::move(t));
  }

  void push_text(std::string text) {
    if (!text.empty()) push(Token::Type::text, std::move(text));
  }

  bool at(std::string_view s) const { return s_.compare(pos_, s.size(), s) == 0; }

  // After a closing delimiter: '-' strips the whitespace that follows; a block's or comment's
  // plain close takes one newline (trim_blocks).
  void close(size_t length, char control, bool trim) {
    const size_t end = pos_ + length;
    if (control == '-') pos_ = skip_space(s_, end);
    else if (control != '+' && trim && end < s_.size() && s_[end] == '\n') pos_ = end + 1;
    else pos_ = end;
  }

  void comment() {
    const size_t end = s_.find("#}", pos_);
    if (end == std::string::npos) syntax_error(line_, "missing end of comment tag");
    const char control = end > pos_ && (s_[end - 1] == '-' || s_[end - 1] == '+') ? s_[end - 1] : 0;
    line_ += count_lines(pos_, end);
    pos_ = end;
    const size_t start = pos_;
    close(2, control, true);
    line_ += count_lines(start, pos_);
  }

  // The tokens of a {{ }} or {% %} up to its end; the end only counts with brackets balanced.
  void tag_body(bool block) {
    const std::string_view end = block ? "%}" : "}}";
    std::string brackets;
    while (true) {
      if (pos_ >= s_.size()) syntax_error(line_, fmt::format("unexpected end of template: missing '{}'", end));
      if (brackets.empty()) {
        const char control = (s_[pos_] == '-' || (block && s_[pos_] == '+')) ? s_[pos_] : 0;
        if (s_.compare(pos_ + (control ? 1 : 0), 2, end) == 0) {
          push(block ? Token::Type::block_end : Token::Type::variable_end);
          const size_t start = pos_;
          close(control ? 3 : 2, control, block);
          line_ += count_lines(start, pos_);
          return;
        }
      }
      const unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (size_t ws = skip_space(s_, pos_); ws > pos_) {
        line_ += count_lines(pos_, ws);
        pos_ = ws;
      } else if (std::isdigit(c)) {
        number();
      } else if (std::isalpha(c) || c == '_') {
        const size_t start = pos_;
        while (pos_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '_')) ++pos_;
        push(Token::Type::name, s_.substr(start, pos_ - start));
      } else if (c == '\'' || c == '"') {
        string_literal();
      } else {
        op(brackets);
      }
    }
  }

  // jinja2's number rules: a float has a fraction or an exponent (and no '.' before it);
  // integers may be 0b/0o/0x; digits may be grouped with single underscores.
  void number() {
    size_t i = pos_;
    std::string clean;
    if (pos_ == 0 || s_[pos_ - 1] != '.') {
      scan_digits(s_, i, clean);
      bool is_float = false;
      if (i + 1 < s_.size() && s_[i] == '.' && std::isdigit(static_cast<unsigned char>(s_[i + 1]))) {
        clean += s_[i++];
        scan_digits(s_, i, clean);
        is_float = true;
      }
      if (i < s_.size() && (s_[i] == 'e' || s_[i] == 'E')) {
        size_t j = i + 1;
        std::string exp = "e";
        if (j < s_.size() && (s_[j] == '+' || s_[j] == '-')) exp += s_[j++];
        if (scan_digits(s_, j, exp)) {
          clean += exp;
          i = j;
          is_float = true;
        }
      }
      if (is_float) {
        push(Token::Type::floating);
        tokens_.back().floating = std::strtod(clean.c_str(), nullptr);  // Loom never changes the C locale
        pos_ = i;
        return;
      }
    }
    integer();
  }

  void integer() {
    int base = 10;
    size_t i = pos_;
    std::string digits;
    const char prefix = pos_ + 1 < s_.size() && s_[pos_] == '0' ? char(std::tolower(static_cast<unsigned char>(s_[pos_ + 1]))) : 0;
    if (prefix == 'b' || prefix == 'o' || prefix == 'x') {
      base = prefix == 'b' ? 2 : prefix == 'o' ? 8 : 16;
      i += 2;
      auto valid = [&](size_t k) {  // a digit of the base at k
        if (k >= s_.size()) return false;
        const char ch = char(std::tolower(static_cast<unsigned char>(s_[k])));
        return (ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : 99) < base;
      };
      while (valid(i) || (i < s_.size() && s_[i] == '_' && valid(i + 1))) {
        if (s_[i] != '_') digits += s_[i];
        ++i;
      }
      if (digits.empty()) {  // "0b" without digits: the integer 0, then a name
        i = pos_ + 1;
        base = 10;
        digits += '0';
      }
    } else if (s_[pos_] == '0') {
      digits += '0';
      for (++i; i < s_.size() && (s_[i] == '0' || (s_[i] == '_' && i + 1 < s_.size() && s_[i + 1] == '0'));) ++i;
    } else {
      scan_digits(s_, i, digits);
    }
    errno = 0;
    const long long v = std::strtoll(digits.c_str(), nullptr, base);
    if (errno == ERANGE) syntax_error(line_, "an integer literal does not fit 64 bits");
    push(Token::Type::integer);
    tokens_.back().integer = v;
    pos_ = i;
  }

  void string_literal() {
    const char quote = s_[pos_];
    size_t i = pos_ + 1;
    while (i < s_.size() && s_[i] != quote) i += s_[i] == '\\' ? 2 : 1;
    if (i >= s_.size()) syntax_error(line_, fmt::format("unexpected char {}", quote == '"' ? "'\"'" : "\"'\""));
    push(Token::Type::string, unescape(std::string_view(s_).substr(pos_ + 1, i - pos_ - 1), line_));
    line_ += count_lines(pos_, i);
    pos_ = i + 1;
  }

  void op(std::string& brackets) {
    for (std::string_view o : kOperators2)
      if (at(o)) {
        push(Token::Type::op, std::string(o));
        pos_ += 2;
        return;
      }
    const char c = s_[pos_];
    if (kOperators1.find(c) == std::string_view::npos) {
      size_t i = pos_;
      syntax_error(line_, fmt::format("unexpected char '{}'", to_utf8(std::u32string(1, next_code_point(s_, i)))));
    }
    if (c == '(' || c == '[' || c == '{') brackets += c == '(' ? ')' : c == '[' ? ']' : '}';
    if (c == ')' || c == ']' || c == '}') {
      if (brackets.empty()) syntax_error(line_, fmt::format("unexpected '{}'", c));
      if (brackets.back() != c) syntax_error(line_, fmt::format("unexpected '{}', expected '{}'", c, brackets.back()));
      brackets.pop_back();
    }
    push(Token::Type::op, std::string(1, c));
    ++pos_;
  }

  std::string s_;
  size_t pos_ = 0;
  int line_ = 1;
  std::vector<Token> tokens_;
};

}  // namespace

void syntax_error(int line, const std::string& message) { throw Error(fmt::format("chat template: line {}: {}", line, message)); }

std::vector<Token> lex(std::string_view source) { return Lexer(source).run(); }

}  // namespace loom::chat
