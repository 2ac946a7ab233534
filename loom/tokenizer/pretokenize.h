// GPT-2 pre-tokenization written by hand: splits UTF-8 text into the pieces that the reference
// regex 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ matches
// (JavaScript semantics). A byte that is not part of valid UTF-8 counts as one 'other' character.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace loom::tokenizer {

enum class CharClass : uint8_t { other, letter, number, space };

// A run of code points [lo, hi] of one class.
struct CodeRange {
  char32_t lo;
  char32_t hi;
  CharClass cls;
};

// Letters (\p{L}), numbers (\p{N}) and JavaScript's \s as sorted, disjoint ranges (generated
// by gen_unicode_tables.py into unicode_tables.cpp).
std::span<const CodeRange> code_ranges();

CharClass char_class(char32_t cp);

// Which characters \s matches: JavaScript's (the reference GPT-2 encoder's: Zs, TAB to CR,
// U+2028, U+2029, U+FEFF) or Unicode's White_Space (Hugging Face tokenizers' regex engine),
// which differ at U+0085 and U+FEFF only.
enum class Spaces { javascript, unicode };

// Byte length of the pre-token that starts at byte `pos` (< text.size()) of `text`.
size_t pretoken_length(std::string_view text, size_t pos, Spaces spaces = Spaces::javascript);

// All pre-tokens of `text` in order; they concatenate back to `text`.
std::vector<std::string_view> pretokenize(std::string_view text);

}  // namespace loom::tokenizer
