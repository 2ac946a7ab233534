#include "loom/tokenizer/added.h"

#include <algorithm>

#include <unicode/uchar.h>
#include <unicode/utf8.h>

namespace loom::tokenizer {

namespace {

// Rust regex's \w and \s, which the library's single_word and strip checks use.
bool is_word(UChar32 c) {
  const int8_t t = u_charType(c);
  return u_hasBinaryProperty(c, UCHAR_ALPHABETIC) || u_hasBinaryProperty(c, UCHAR_JOIN_CONTROL) ||
         t == U_NON_SPACING_MARK || t == U_ENCLOSING_MARK || t == U_COMBINING_SPACING_MARK ||
         t == U_DECIMAL_DIGIT_NUMBER || t == U_CONNECTOR_PUNCTUATION;
}
bool is_space(UChar32 c) { return u_hasBinaryProperty(c, UCHAR_WHITE_SPACE); }

const uint8_t* bytes(std::string_view s) { return reinterpret_cast<const uint8_t*>(s.data()); }

UChar32 char_before(std::string_view s, size_t end) {
  if (end == 0) return -1;
  int32_t i = int32_t(end);
  UChar32 c;
  U8_PREV(bytes(s), 0, i, c);
  return c;
}

UChar32 char_at(std::string_view s, size_t pos) {
  if (pos >= s.size()) return -1;
  int32_t i = int32_t(pos);
  UChar32 c;
  U8_NEXT(bytes(s), i, int32_t(s.size()), c);
  return c;
}

}  // namespace

void AddedMatcher::add(std::string_view pattern, const AddedToken& t) {
  if (pattern.empty()) return;
  int32_t n = 0;
  for (char ch : pattern) {
    const auto b = uint8_t(ch);
    int32_t child = -1;
    for (const auto& [byte, node] : nodes_[n].next)
      if (byte == b) child = node;
    if (child < 0) {
      child = int32_t(nodes_.size());
      nodes_[n].next.emplace_back(b, child);
      nodes_.emplace_back();
    }
    n = child;
  }
  if (nodes_[n].token < 0) {  // the first of two tokens with the same content wins
    nodes_[n].token = int32_t(tokens_.size());
    tokens_.push_back(t);
  }
}

std::vector<AddedMatcher::Segment> AddedMatcher::split(std::string_view text) const {
  std::vector<Segment> out;
  size_t start_offset = 0;  // the end of the last token taken
  for (size_t pos = 0; pos < text.size();) {
    // The longest pattern starting at pos.
    int32_t n = 0, best = -1;
    size_t best_end = 0;
    for (size_t i = pos; i < text.size(); ++i) {
      int32_t child = -1;
      for (const auto& [byte, node] : nodes_[n].next)
        if (byte == uint8_t(text[i])) child = node;
      if (child < 0) break;
      n = child;
      if (nodes_[n].token >= 0) {
        best = nodes_[n].token;
        best_end = i + 1;
      }
    }
    if (best < 0) {
      ++pos;
      continue;
    }
    const AddedToken& t = tokens_[best];
    size_t start = pos, stop = best_end;
    pos = best_end;  // a discarded match is still passed over, as aho-corasick's find_iter does
    if (t.single_word) {
      const UChar32 before = char_before(text, start), after = char_at(text, stop);
      if ((before >= 0 && is_word(before)) || (after >= 0 && is_word(after))) continue;
    }
    if (t.lstrip) {
      size_t s = start;
      for (UChar32 c; s > 0 && (c = char_before(text, s)) >= 0 && is_space(c);) {
        int32_t i = int32_t(s);
        U8_BACK_1(bytes(text), 0, i);
        s = size_t(i);
      }
      start = std::max(s, start_offset);
    }
    if (t.rstrip) {
      for (UChar32 c; stop < text.size() && (c = char_at(text, stop)) >= 0 && is_space(c);) {
        int32_t i = int32_t(stop);
        U8_FWD_1(bytes(text), i, int32_t(text.size()));
        stop = size_t(i);
      }
    }
    pos = std::max(pos, stop);
    if (start_offset < start) out.push_back({start_offset, start, -1});
    out.push_back({start, stop, t.id});
    start_offset = stop;
  }
  if (start_offset < text.size()) out.push_back({start_offset, text.size(), -1});
  return out;
}

}  // namespace loom::tokenizer
