// The GPT-2 pre-tokenizer as a hand-written matcher over UTF-8 code points; it reproduces the
// reference regex's alternation order and the backtracking of \s+(?!\S) without a regex engine.
#include "loom/tokenizer/pretokenize.h"

#include <algorithm>
#include <array>

namespace loom::tokenizer {

namespace {

constexpr char32_t kInvalid = 0xFFFFFFFF;  // stands for a byte that is not valid UTF-8

struct Char {
  char32_t cp;
  uint32_t len;  // bytes
  CharClass cls;
};

constexpr std::array<CharClass, 128> make_ascii_classes() {
  std::array<CharClass, 128> t{};
  for (int c = 0; c < 128; ++c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
      t[c] = CharClass::letter;
    else if (c >= '0' && c <= '9')
      t[c] = CharClass::number;
    else if (c == ' ' || (c >= '\t' && c <= '\r'))
      t[c] = CharClass::space;
  }
  return t;
}
constexpr std::array<CharClass, 128> kAscii = make_ascii_classes();

bool is_cont(unsigned char b) { return (b & 0xC0) == 0x80; }

// Decodes the non-ASCII code point at `pos`; overlong forms, surrogates, values above
// U+10FFFF and truncated sequences yield kInvalid with length 1.
[[gnu::noinline]] Char decode_multibyte(std::string_view s, size_t pos, Spaces spaces) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + pos;
  const size_t left = s.size() - pos;
  const unsigned char b0 = p[0];
  char32_t cp = kInvalid;
  uint32_t len = 1;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (left >= 2 && is_cont(p[1])) {
      cp = (char32_t(b0 & 0x1F) << 6) | (p[1] & 0x3F);
      len = 2;
    }
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    const unsigned char lo = b0 == 0xE0 ? 0xA0 : 0x80, hi = b0 == 0xED ? 0x9F : 0xBF;
    if (left >= 3 && p[1] >= lo && p[1] <= hi && is_cont(p[2])) {
      cp = (char32_t(b0 & 0x0F) << 12) | (char32_t(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
      len = 3;
    }
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    const unsigned char lo = b0 == 0xF0 ? 0x90 : 0x80, hi = b0 == 0xF4 ? 0x8F : 0xBF;
    if (left >= 4 && p[1] >= lo && p[1] <= hi && is_cont(p[2]) && is_cont(p[3])) {
      cp = (char32_t(b0 & 0x07) << 18) | (char32_t(p[1] & 0x3F) << 12) |
           (char32_t(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
      len = 4;
    }
  }
  CharClass cls = cp == kInvalid ? CharClass::other : char_class(cp);
  if (spaces == Spaces::unicode && (cp == 0x85 || cp == 0xFEFF))  // where the two sets differ
    cls = cp == 0x85 ? CharClass::space : CharClass::other;
  return {cp, len, cls};
}

// The character at `pos`, with ASCII (most text) decided inline.
inline Char char_at(std::string_view s, size_t pos, Spaces spaces) {
  const auto b0 = uint8_t(s[pos]);
  if (b0 < 0x80) [[likely]]
    return {b0, 1, kAscii[b0]};
  return decode_multibyte(s, pos, spaces);
}

// Length of 's 't 're 've 'm 'll 'd at `pos` (which holds an apostrophe), or 0.
size_t contraction_length(std::string_view s, size_t pos) {
  const std::string_view rest = s.substr(pos + 1);
  if (rest.empty()) return 0;
  const char c = rest[0];
  if (c == 's' || c == 't' || c == 'm' || c == 'd') return 2;
  if (rest.starts_with("re") || rest.starts_with("ve") || rest.starts_with("ll")) return 3;
  return 0;
}

}  // namespace

CharClass char_class(char32_t cp) {
  if (cp < 128) return kAscii[cp];
  const auto ranges = code_ranges();
  auto it = std::upper_bound(ranges.begin(), ranges.end(), cp,
                             [](char32_t c, const CodeRange& r) { return c < r.lo; });
  if (it == ranges.begin()) return CharClass::other;
  --it;
  return cp <= it->hi ? it->cls : CharClass::other;
}

size_t pretoken_length(std::string_view s, size_t pos, Spaces spaces) {
  const Char c0 = char_at(s, pos, spaces);
  if (c0.cp == '\'') {
    if (size_t n = contraction_length(s, pos)) return n;
  }
  // ` ?\p{L}+`, ` ?\p{N}+` and ` ?[^\s\p{L}\p{N}]+`: an optional leading space, then a run.
  size_t end = pos + c0.len;
  CharClass cls = c0.cls;
  if (c0.cp == ' ' && end < s.size()) {
    const Char c1 = char_at(s, end, spaces);
    if (c1.cls != CharClass::space) {
      cls = c1.cls;
      end += c1.len;
    }
  }
  if (cls != CharClass::space) {
    while (end < s.size()) {
      const Char c = char_at(s, end, spaces);
      if (c.cls != cls) break;
      end += c.len;
    }
    return end - pos;
  }
  // `\s+(?!\S)` takes the whole run before the end of the text, else all but its last
  // character; a lone space before a non-space falls through to `\s+`.
  size_t last = pos, count = 0;
  end = pos;
  while (end < s.size()) {
    const Char c = char_at(s, end, spaces);
    if (c.cls != CharClass::space) break;
    last = end;
    end += c.len;
    ++count;
  }
  if (end < s.size() && count >= 2) return last - pos;
  return end - pos;
}

std::vector<std::string_view> pretokenize(std::string_view text) {
  std::vector<std::string_view> out;
  for (size_t pos = 0; pos < text.size();) {
    const size_t n = pretoken_length(text, pos);
    out.push_back(text.substr(pos, n));
    pos += n;
  }
  return out;
}

}  // namespace loom::tokenizer
