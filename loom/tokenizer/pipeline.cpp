// tokenizer.json normalizers, pre-tokenizers and decoders. Unicode normalization, case and
// character properties come from ICU; regex patterns from PCRE2 (regex.cpp).
#include "loom/tokenizer/pipeline.h"

#include <optional>

#include <nlohmann/json.hpp>
#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/utf8.h>

#include "loom/core/error.h"
#include "loom/tokenizer/bpe.h"
#include "loom/tokenizer/pretokenize.h"

namespace loom::tokenizer {

using nlohmann::json;

namespace {

// ---------------------------------------------------------------- UTF-8 and character classes

char32_t next_char(std::string_view s, size_t& i) {
  UChar32 c;
  int32_t j = int32_t(i);
  U8_NEXT(reinterpret_cast<const uint8_t*>(s.data()), j, int32_t(s.size()), c);
  i = size_t(j);
  return c < 0 ? 0xFFFD : char32_t(c);
}

void append_char(std::string& out, char32_t c) {
  char buf[4];
  int32_t n = 0;
  U8_APPEND_UNSAFE(reinterpret_cast<uint8_t*>(buf), n, UChar32(c));
  out.append(buf, size_t(n));
}

bool is_whitespace(char32_t c) { return u_hasBinaryProperty(UChar32(c), UCHAR_WHITE_SPACE); }

// Rust's char::is_ascii_punctuation or a Unicode punctuation category (P*).
bool is_punctuation(char32_t c) { return u_ispunct(UChar32(c)) || (c < 0x80 && std::ispunct(int(c))); }

// Rust's char::to_lowercase: the full mapping, which differs from the simple one only at U+0130.
void append_lower(std::string& out, char32_t c) {
  if (c == 0x130) {
    out += "i\xCC\x87";
    return;
  }
  append_char(out, char32_t(u_tolower(UChar32(c))));
}

// ---------------------------------------------------------------- splitting with a behaviour

struct Span {
  size_t begin, end;
  bool match;
};

// The pieces of `s` given its matches (sorted, disjoint): HF's SplitDelimiterBehavior.
template <class Emit>
void split_by(std::string_view s, const std::vector<Regex::Match>& matches,
              Pipeline::Behavior behavior, bool invert, Emit emit) {
  std::vector<Span> spans;
  size_t prev = 0;
  for (const auto& m : matches) {
    if (m.begin > prev) spans.push_back({prev, m.begin, invert});
    spans.push_back({m.begin, m.end, !invert});
    prev = m.end;
  }
  if (prev < s.size()) spans.push_back({prev, s.size(), invert});
  std::vector<Span> out;
  using B = Pipeline::Behavior;
  switch (behavior) {
    case B::removed:
      for (const Span& sp : spans)
        if (!sp.match) out.push_back(sp);
      break;
    case B::isolated:
      out = spans;
      break;
    case B::merged_with_previous: {
      bool previous_match = false;
      for (const Span& sp : spans) {
        if (sp.match && !previous_match && !out.empty())
          out.back().end = sp.end;
        else
          out.push_back(sp);
        previous_match = sp.match;
      }
      break;
    }
    case B::merged_with_next: {
      bool next_match = false;
      for (size_t k = spans.size(); k-- > 0;) {
        const Span& sp = spans[k];
        if (sp.match && !next_match && !out.empty())
          out.back().begin = sp.begin;
        else
          out.push_back(sp);
        next_match = sp.match;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
    case B::contiguous: {
      bool previous_match = false;
      for (const Span& sp : spans) {
        if (sp.match == previous_match && !out.empty())
          out.back().end = sp.end;
        else
          out.push_back(sp);
        previous_match = sp.match;
      }
      break;
    }
  }
  for (const Span& sp : out)
    if (sp.end > sp.begin) emit(s.substr(sp.begin, sp.end - sp.begin));
}

// Each character for which pred holds is one match.
template <class Pred>
std::vector<Regex::Match> char_matches(std::string_view s, Pred pred) {
  std::vector<Regex::Match> out;
  for (size_t i = 0; i < s.size();) {
    const size_t at = i;
    if (pred(next_char(s, i))) out.push_back({at, i});
  }
  return out;
}

std::string replace_all(std::string_view s, const Regex& re, std::string_view with) {
  std::string out;
  size_t prev = 0;
  for (const auto& m : re.find_all(s)) {
    out.append(s.substr(prev, m.begin - prev));
    out.append(with);
    prev = m.end;
  }
  out.append(s.substr(prev));
  return out;
}

// ---------------------------------------------------------------- parsing

std::string str_field(const json& j, const char* key, std::string_view where) {
  LOOM_CHECK(j.contains(key) && j[key].is_string(), "tokenizer: {}: {} needs a string \"{}\"",
             where, j.value("type", "component"), key);
  return j[key].get<std::string>();
}

Regex parse_pattern(const json& j, std::string_view where) {
  LOOM_CHECK(j.contains("pattern") && j["pattern"].is_object() && j["pattern"].size() == 1,
             "tokenizer: {}: {} needs \"pattern\": {{\"String\": ...}} or {{\"Regex\": ...}}",
             where, j.value("type", "component"));
  const json& p = j["pattern"];
  if (p.contains("String")) return Regex::literal(str_field(p, "String", where), where);
  return Regex(str_field(p, "Regex", where), where);
}

Pipeline::Behavior parse_behavior(const json& j, std::string_view where) {
  const std::string b = j.value("behavior", std::string("Isolated"));
  using B = Pipeline::Behavior;
  if (b == "Removed") return B::removed;
  if (b == "Isolated") return B::isolated;
  if (b == "MergedWithPrevious") return B::merged_with_previous;
  if (b == "MergedWithNext") return B::merged_with_next;
  if (b == "Contiguous") return B::contiguous;
  throw Error(fmt::format("tokenizer: {}: split behavior {:?} is not one of Removed, Isolated, "
                          "MergedWithPrevious, MergedWithNext, Contiguous", where, b));
}

std::string single_char(const std::string& s, std::string_view what, std::string_view where) {
  size_t i = 0;
  if (!s.empty()) next_char(s, i);
  LOOM_CHECK(!s.empty() && i == s.size(), "tokenizer: {}: {} must be one character, got {:?}",
             where, what, s);
  return s;
}

// Calls f on each element of `j`, descending into {"type": "Sequence", key: [...]}.
template <class F>
void each_step(const json& j, const char* key, std::string_view where, F f) {
  if (j.is_null()) return;
  LOOM_CHECK(j.is_object() && j.contains("type") && j["type"].is_string(),
             "tokenizer: {}: expected an object with a \"type\", got {}", where, j.dump());
  if (j["type"] == "Sequence") {
    LOOM_CHECK(j.contains(key) && j[key].is_array(), "tokenizer: {}: Sequence needs \"{}\"",
               where, key);
    for (const json& e : j[key]) each_step(e, key, where, f);
    return;
  }
  f(j, j["type"].get<std::string>());
}

Pipeline::Normalizer parse_normalizer(const json& j, const std::string& type,
                                      std::string_view where) {
  using K = Pipeline::Normalizer::Kind;
  if (type == "NFC") return {K::nfc, {}, {}};
  if (type == "NFD") return {K::nfd, {}, {}};
  if (type == "NFKC") return {K::nfkc, {}, {}};
  if (type == "NFKD") return {K::nfkd, {}, {}};
  if (type == "Lowercase") return {K::lowercase, {}, {}};
  if (type == "Prepend") return {K::prepend, {}, str_field(j, "prepend", where)};
  if (type == "Replace")
    return {K::replace, parse_pattern(j, where), str_field(j, "content", where)};
  if (type == "Strip")
    return {K::strip, {}, {}, j.value("strip_left", false), j.value("strip_right", false)};
  throw Error(fmt::format("tokenizer: {}: normalizer {:?} is not supported (Loom has NFC, NFD, "
                          "NFKC, NFKD, Lowercase, Prepend, Replace, Strip, Sequence)",
                          where, type));
}

Pipeline::PreTokenizer parse_pre_tokenizer(const json& j, const std::string& type,
                                           std::string_view where) {
  using K = Pipeline::PreTokenizer::Kind;
  Pipeline::PreTokenizer p{K::split};
  if (type == "ByteLevel") {
    p.kind = K::byte_level;
    p.flag = j.value("add_prefix_space", true);
    p.use_regex = j.value("use_regex", true);
  } else if (type == "Split") {
    p.pattern = parse_pattern(j, where);
    p.behavior = parse_behavior(j, where);
    p.invert = j.value("invert", false);
  } else if (type == "Whitespace") {  // HF: \w+|[^\w\s]+ kept, with Oniguruma's \w
    p.pattern = Regex(R"([\p{L}\p{M}\p{Nd}\p{Pc}]+|[^\p{L}\p{M}\p{Nd}\p{Pc}\s]+)", where);
    p.behavior = Pipeline::Behavior::removed;
    p.invert = true;
  } else if (type == "WhitespaceSplit") {
    p.kind = K::whitespace_split;
  } else if (type == "Digits") {
    p.kind = K::digits;
    p.flag = j.value("individual_digits", false);
  } else if (type == "Punctuation") {
    p.kind = K::punctuation;
    p.behavior = parse_behavior(j, where);
  } else if (type == "Metaspace") {
    p.kind = K::metaspace;
    p.replacement = single_char(str_field(j, "replacement", where), "replacement", where);
    p.pattern = Regex::literal(p.replacement, where);
    p.flag = j.value("split", true);
    using P = Pipeline::PreTokenizer::Prepend;
    if (j.contains("prepend_scheme")) {
      const std::string s = str_field(j, "prepend_scheme", where);
      LOOM_CHECK(s == "always" || s == "first" || s == "never", "tokenizer: {}: Metaspace "
                 "prepend_scheme {:?} is not always, first or never", where, s);
      p.prepend = s == "always" ? P::always : s == "first" ? P::first : P::never;
    } else {
      p.prepend = j.value("add_prefix_space", true) ? P::always : P::never;
    }
  } else {
    throw Error(fmt::format("tokenizer: {}: pre_tokenizer {:?} is not supported (Loom has "
                            "ByteLevel, Split, Digits, Metaspace, Whitespace, WhitespaceSplit, "
                            "Punctuation, Sequence)", where, type));
  }
  return p;
}

Pipeline::Decoder parse_decoder(const json& j, const std::string& type, std::string_view where) {
  using K = Pipeline::Decoder::Kind;
  if (type == "ByteLevel") return {K::byte_level};
  if (type == "ByteFallback") return {K::byte_fallback};
  if (type == "Fuse") return {K::fuse};
  if (type == "Replace")
    return {K::replace, parse_pattern(j, where), str_field(j, "content", where)};
  if (type == "Strip") {
    Pipeline::Decoder d{K::strip};
    const std::string c = single_char(str_field(j, "content", where), "Strip content", where);
    size_t i = 0;
    d.strip_char = next_char(c, i);
    d.start = j.value("start", size_t{0});
    d.stop = j.value("stop", size_t{0});
    return d;
  }
  if (type == "Metaspace") {
    Pipeline::Decoder d{K::metaspace};
    d.text = single_char(str_field(j, "replacement", where), "replacement", where);
    d.prepend = j.contains("prepend_scheme") ? j["prepend_scheme"] != "never"
                                             : j.value("add_prefix_space", true);
    return d;
  }
  throw Error(fmt::format("tokenizer: {}: decoder {:?} is not supported (Loom has ByteLevel, "
                          "Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence)",
                          where, type));
}

const icu::Normalizer2* icu_normalizer(Pipeline::Normalizer::Kind k) {
  UErrorCode st = U_ZERO_ERROR;
  using K = Pipeline::Normalizer::Kind;
  const icu::Normalizer2* n = k == K::nfc    ? icu::Normalizer2::getNFCInstance(st)
                              : k == K::nfd  ? icu::Normalizer2::getNFDInstance(st)
                              : k == K::nfkc ? icu::Normalizer2::getNFKCInstance(st)
                                             : icu::Normalizer2::getNFKDInstance(st);
  LOOM_CHECK(U_SUCCESS(st), "tokenizer: ICU has no Unicode normalization data: {}",
             u_errorName(st));
  return n;
}

// Unicode normalization of valid UTF-8; ASCII and already-normal text are returned as is.
std::string unicode_normalize(std::string_view s, Pipeline::Normalizer::Kind k) {
  const bool ascii = std::all_of(s.begin(), s.end(), [](char c) { return uint8_t(c) < 0x80; });
  if (ascii) return std::string(s);
  const icu::Normalizer2* n = icu_normalizer(k);
  UErrorCode st = U_ZERO_ERROR;
  const icu::StringPiece sp(s.data(), int32_t(s.size()));
  if (n->isNormalizedUTF8(sp, st) && U_SUCCESS(st)) return std::string(s);
  st = U_ZERO_ERROR;
  std::string out;
  icu::StringByteSink<std::string> sink(&out);
  n->normalizeUTF8(0, sp, sink, nullptr, st);
  LOOM_CHECK(U_SUCCESS(st), "tokenizer: Unicode normalization failed: {}", u_errorName(st));
  return out;
}

}  // namespace

// ---------------------------------------------------------------- Pipeline

Pipeline::Pipeline()
    : pre_tokenizers_{PreTokenizer{PreTokenizer::Kind::byte_level, {}, Behavior::isolated,
                                   false, false, true, true}},
      decoders_{Decoder{Decoder::Kind::byte_level}} {}

Pipeline Pipeline::parse(const json& normalizer, const json& pre_tokenizer, const json& decoder,
                         std::string_view where) {
  Pipeline p;
  p.pre_tokenizers_.clear();
  p.decoders_.clear();
  const std::string wn = fmt::format("{} normalizer", where);
  each_step(normalizer, "normalizers", wn, [&](const json& j, const std::string& type) {
    p.normalizers_.push_back(parse_normalizer(j, type, wn));
  });
  const std::string wp = fmt::format("{} pre_tokenizer", where);
  each_step(pre_tokenizer, "pretokenizers", wp, [&](const json& j, const std::string& type) {
    p.pre_tokenizers_.push_back(parse_pre_tokenizer(j, type, wp));
  });
  const std::string wd = fmt::format("{} decoder", where);
  each_step(decoder, "decoders", wd, [&](const json& j, const std::string& type) {
    p.decoders_.push_back(parse_decoder(j, type, wd));
  });
  p.byte_level_ = false;
  for (size_t i = 0; i < p.pre_tokenizers_.size(); ++i) {
    if (p.pre_tokenizers_[i].kind != PreTokenizer::Kind::byte_level) continue;
    // Loom's byte-level tokens are bytes, so nothing may look at the characters after the map.
    LOOM_CHECK(i + 1 == p.pre_tokenizers_.size(), "tokenizer: {}: ByteLevel must be the last "
               "pre-tokenizer", wp);
    p.byte_level_ = true;
  }
  return p;
}

std::optional<Spaces> Pipeline::gpt2_spaces() const {
  const bool gpt2 = normalizers_.empty() && pre_tokenizers_.size() == 1 &&
                    pre_tokenizers_[0].kind == PreTokenizer::Kind::byte_level &&
                    !pre_tokenizers_[0].flag && pre_tokenizers_[0].use_regex;
  if (!gpt2) return std::nullopt;
  return pre_tokenizers_[0].js_spaces ? Spaces::javascript : Spaces::unicode;
}

bool Pipeline::byte_level_decoder_only() const {
  return decoders_.size() == 1 && decoders_[0].kind == Decoder::Kind::byte_level;
}

std::optional<std::vector<std::string>> Pipeline::byte_level_splits() const {
  const bool nfc_at_most = normalizers_.empty() || (normalizers_.size() == 1 && normalizers_[0].kind == Normalizer::Kind::nfc);
  if (!nfc_at_most || pre_tokenizers_.size() < 2) return std::nullopt;
  const PreTokenizer& last = pre_tokenizers_.back();
  if (last.kind != PreTokenizer::Kind::byte_level || last.use_regex || last.flag) return std::nullopt;
  std::vector<std::string> patterns;
  for (size_t i = 0; i + 1 < pre_tokenizers_.size(); ++i) {
    const PreTokenizer& p = pre_tokenizers_[i];
    if (p.kind != PreTokenizer::Kind::split || p.behavior != Behavior::isolated || p.invert || !p.pattern) return std::nullopt;
    patterns.push_back(p.pattern->source());
  }
  return patterns;
}

bool Pipeline::sentencepiece() const {
  using K = Normalizer::Kind;
  const std::string_view space = "\u2581";
  return pre_tokenizers_.empty() && normalizers_.size() == 2 && normalizers_[0].kind == K::prepend && normalizers_[0].text == space &&
         normalizers_[1].kind == K::replace && normalizers_[1].text == space &&
         (normalizers_[1].pattern->source() == " " || normalizers_[1].pattern->source() == "\\ ");
}

std::string Pipeline::normalize(std::string_view text) const {
  std::string s(text);
  using K = Normalizer::Kind;
  for (const Normalizer& n : normalizers_) {
    switch (n.kind) {
      case K::nfc: case K::nfd: case K::nfkc: case K::nfkd:
        s = unicode_normalize(s, n.kind);
        break;
      case K::lowercase: {
        std::string out;
        out.reserve(s.size());
        for (size_t i = 0; i < s.size();) append_lower(out, next_char(s, i));
        s = std::move(out);
        break;
      }
      case K::prepend:
        if (!s.empty()) s = n.text + s;
        break;
      case K::replace:
        s = replace_all(s, *n.pattern, n.text);
        break;
      case K::strip: {
        size_t b = 0, e = s.size();
        if (n.left)
          for (size_t i = 0; i < e && is_whitespace(next_char(s, i));) b = i;
        if (n.right) {
          std::vector<size_t> starts;  // where each character starts
          for (size_t i = b; i < e; next_char(s, i)) starts.push_back(i);
          while (!starts.empty()) {
            size_t i = starts.back();
            if (!is_whitespace(next_char(s, i))) break;
            e = starts.back();
            starts.pop_back();
          }
        }
        s = s.substr(b, e - b);
        break;
      }
    }
  }
  return s;
}

void Pipeline::pre_tokenize(std::string_view text, bool first,
                            std::vector<std::string_view>& pieces,
                            std::deque<std::string>& arena) const {
  struct Piece {
    std::string_view s;
    bool first;
  };
  std::vector<Piece> cur{{text, first}}, next;
  using K = PreTokenizer::Kind;
  for (const PreTokenizer& p : pre_tokenizers_) {
    next.clear();
    for (const Piece& piece : cur) {
      std::string_view s = piece.s;
      bool first_out = piece.first;
      auto emit = [&](std::string_view part) {
        next.push_back({part, first_out});
        first_out = false;
      };
      switch (p.kind) {
        case K::byte_level:
          if (p.flag && !s.starts_with(' ')) {
            std::string& t = arena.emplace_back(1, ' ');
            s = t.append(s);
          }
          if (!p.use_regex) {
            emit(s);
          } else {
            for (size_t pos = 0; pos < s.size();) {
              const size_t len =
                  pretoken_length(s, pos, p.js_spaces ? Spaces::javascript : Spaces::unicode);
              emit(s.substr(pos, len));
              pos += len;
            }
          }
          break;
        case K::split:
          split_by(s, p.pattern->find_all(s), p.behavior, p.invert, emit);
          break;
        case K::whitespace_split:
          split_by(s, char_matches(s, is_whitespace), Behavior::removed, false, emit);
          break;
        case K::digits:
          split_by(s, char_matches(s, [](char32_t c) { return c >= '0' && c <= '9'; }),
                   p.flag ? Behavior::isolated : Behavior::contiguous, false, emit);
          break;
        case K::punctuation:
          split_by(s, char_matches(s, is_punctuation), p.behavior, false, emit);
          break;
        case K::metaspace: {
          std::string t;
          t.reserve(s.size() + p.replacement.size());
          for (char c : s) {
            if (c == ' ') t += p.replacement;
            else t += c;
          }
          const bool prepend =
              !std::string_view(t).starts_with(p.replacement) &&
              (p.prepend == PreTokenizer::Prepend::always ||
               (p.prepend == PreTokenizer::Prepend::first && piece.first));
          if (prepend) t = p.replacement + t;
          const std::string_view owned = arena.emplace_back(std::move(t));
          if (p.flag)
            split_by(owned, p.pattern->find_all(owned),
                     Behavior::merged_with_next, false, emit);
          else
            emit(owned);
          break;
        }
      }
    }
    cur.swap(next);
  }
  for (const Piece& piece : cur)
    if (!piece.s.empty()) pieces.push_back(piece.s);
}

std::string Pipeline::decode(std::vector<std::string> tokens) const {
  using K = Decoder::Kind;
  if (decoders_.empty()) {  // HF joins the tokens with spaces when there is no decoder
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
    return out;
  }
  for (size_t k = 0; k < decoders_.size(); ++k) {
    const Decoder& d = decoders_[k];
    switch (d.kind) {
      case K::byte_level: {
        std::string bytes;
        for (const std::string& t : tokens) {
          // A token with a character outside the byte alphabet (an added token) stays as is.
          std::optional<std::string> b = from_byte_level(t);
          bytes += b ? *b : t;
        }
        tokens.assign(1, k + 1 == decoders_.size() ? std::move(bytes) : valid_utf8(bytes));
        break;
      }
      case K::metaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          std::string out;
          for (size_t j = 0; j < tokens[i].size();) {
            const size_t at = j;
            next_char(tokens[i], j);
            const std::string_view c(tokens[i].data() + at, j - at);
            if (c != d.text) out += c;
            else if (i != 0 || !d.prepend) out += ' ';
          }
          tokens[i] = std::move(out);
        }
        break;
      case K::replace:
        for (std::string& t : tokens) t = replace_all(t, *d.pattern, d.text);
        break;
      case K::byte_fallback: {
        std::vector<std::string> out;
        std::string run;  // the bytes of consecutive <0xNN> tokens
        auto flush = [&] {
          if (run.empty()) return;
          if (valid_utf8(run) == run) {
            out.push_back(run);
          } else {
            for (size_t i = 0; i < run.size(); ++i) out.emplace_back("\xEF\xBF\xBD");
          }
          run.clear();
        };
        for (std::string& t : tokens) {
          const bool byte = t.size() == 6 && t.starts_with("<0x") && t[5] == '>' &&
                            std::isxdigit(uint8_t(t[3])) && std::isxdigit(uint8_t(t[4]));
          if (byte) {
            run += char(std::stoi(t.substr(3, 2), nullptr, 16));
          } else {
            flush();
            out.push_back(std::move(t));
          }
        }
        flush();
        tokens = std::move(out);
        break;
      }
      case K::fuse: {
        std::string all;
        for (const std::string& t : tokens) all += t;
        tokens.assign(1, std::move(all));
        break;
      }
      case K::strip:
        for (std::string& t : tokens) {
          std::vector<std::pair<size_t, char32_t>> chars;  // (offset, character)
          for (size_t i = 0; i < t.size();) {
            const size_t at = i;
            chars.emplace_back(at, next_char(t, i));
          }
          size_t b = 0, e = chars.size();
          while (b < std::min(d.start, chars.size()) && chars[b].second == d.strip_char) ++b;
          for (size_t n = 0; n < d.stop && e > b && chars[e - 1].second == d.strip_char; ++n)
            --e;
          const size_t from = b < chars.size() ? chars[b].first : t.size();
          const size_t to = e < chars.size() ? chars[e].first : t.size();
          t = t.substr(from, to - from);
        }
        break;
    }
  }
  std::string out;
  for (const std::string& t : tokens) out += t;
  return out;
}

std::string valid_utf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (size_t i = 0; i < bytes.size();) {
    const size_t at = i;
    UChar32 c;
    int32_t j = int32_t(i);
    U8_NEXT(reinterpret_cast<const uint8_t*>(bytes.data()), j, int32_t(bytes.size()), c);
    i = size_t(j);
    if (c < 0) out += "\xEF\xBF\xBD";
    else out.append(bytes.substr(at, i - at));
  }
  return out;
}

}  // namespace loom::tokenizer
