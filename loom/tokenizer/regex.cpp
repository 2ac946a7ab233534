#define PCRE2_CODE_UNIT_WIDTH 8
#include "loom/tokenizer/regex.h"

#include <pcre2.h>

#include <cctype>
#include <memory>

#include "loom/core/error.h"

namespace loom::tokenizer {

namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}

// A bound on the work of one match, so that a hostile pattern fails with an error instead of
// running for minutes (the match limit counts PCRE2's internal backtracking calls).
constexpr uint32_t kMatchLimit = 10'000'000;

// Oniguruma, the library's engine, takes \s as Unicode's White_Space; PCRE2 also counts
// U+180E (a format character since Unicode 6.3) as space. Spelling the set out removes that
// one difference: \s becomes the set (bare inside a class), \S outside a class its complement.
constexpr std::string_view kWhiteSpace =
    "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
    "\\x{202F}\\x{205F}\\x{3000}";

std::string with_unicode_spaces(std::string_view p) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[++i];
      if (e == 's') {
        out += in_class ? std::string(kWhiteSpace) : "[" + std::string(kWhiteSpace) + "]";
      } else if (e == 'S' && !in_class) {
        out += "[^" + std::string(kWhiteSpace) + "]";
      } else {
        out += c;
        out += e;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a member, not the end.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (in_class && c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // [:alpha:]
      const size_t end = p.find(":]", i + 2);
      if (end != std::string_view::npos) {
        out.append(p.substr(i, end + 2 - i));
        i = end + 1;
        continue;
      }
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

// JIT-compiled matching needs a stack of its own; each thread has one (a stack shared by threads
// matching at once corrupts their matches). Null falls back to PCRE2's 32 KiB on the C stack.
pcre2_jit_stack* thread_jit_stack(void*) {
  thread_local const std::unique_ptr<pcre2_jit_stack, void (*)(pcre2_jit_stack*)> stack(
      pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr), pcre2_jit_stack_free);
  return stack.get();
}

}  // namespace

struct Regex::Code {
  pcre2_code* code = nullptr;
  pcre2_match_context* context = nullptr;
  ~Code() {
    pcre2_match_context_free(context);
    pcre2_code_free(code);
  }
};

Regex::Regex(std::string_view given, std::string_view where) : where_(where), source_(given) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  auto c = std::make_shared<Code>();
  const std::string pattern = with_unicode_spaces(given);
  c->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                          PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &offset, nullptr);
  LOOM_CHECK(c->code, "tokenizer: {}: regex {:?} is not valid: {}", where, given,
             pcre2_message(err));
  c->context = pcre2_match_context_create(nullptr);
  LOOM_CHECK(c->context, "tokenizer: out of memory compiling a regex");
  pcre2_set_match_limit(c->context, kMatchLimit);
  if (pcre2_jit_compile(c->code, PCRE2_JIT_COMPLETE) == 0)
    pcre2_jit_stack_assign(c->context, thread_jit_stack, nullptr);
  code_ = std::move(c);
}

Regex Regex::literal(std::string_view literal, std::string_view where) {
  std::string quoted;
  for (char ch : literal) {  // a backslash before an ASCII symbol always means the symbol
    const auto u = uint8_t(ch);
    if (u < 0x80 && !std::isalnum(u)) quoted += '\\';
    quoted += ch;
  }
  return Regex(quoted, where);
}

std::vector<Regex::Match> Regex::find_all(std::string_view text) const {
  std::vector<Match> out;
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_->code, nullptr);
  LOOM_CHECK(md, "tokenizer: out of memory matching a regex");
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos <= text.size()) {
    const int rc = pcre2_match(code_->code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md,
                               code_->context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      pcre2_match_data_free(md);
      throw Error(fmt::format("tokenizer: {}: matching the regex failed: {}", where_,
                              pcre2_message(rc)));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    if (ov[1] > ov[0]) {
      out.push_back({ov[0], ov[1]});
      pos = ov[1];
    } else {  // an empty match: step over one UTF-8 character
      pos = ov[0] + 1;
      while (pos < text.size() && (uint8_t(text[pos]) & 0xC0) == 0x80) ++pos;
    }
  }
  pcre2_match_data_free(md);
  return out;
}

}  // namespace loom::tokenizer
