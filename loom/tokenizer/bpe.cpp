// BPE encoding and decoding. Within a pre-token the pending pair of lowest (rank, position) is
// merged first, and the pairs a merge makes join the queue at once: Hugging Face's order. For
// merges that only build on earlier ones (GPT-2's, any trained BPE) it equals the reference
// encoder's (all occurrences of the lowest rank, left to right). A heap keeps long pre-tokens
// O(n log n).
#include "loom/tokenizer/bpe.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <deque>
#include <unordered_map>

#include "loom/core/error.h"
#include "loom/tokenizer/added.h"
#include "loom/tokenizer/pipeline.h"
#include "loom/tokenizer/pretokenize.h"

namespace loom::tokenizer {

namespace {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

// Open-addressing map (left id, right id) → (rank, result id).
class MergeTable {
 public:
  struct Entry {
    uint64_t key = kEmpty;
    int32_t rank = 0;
    int32_t result = 0;
  };

  explicit MergeTable(size_t n) {
    while ((size_t{1} << bits_) < 2 * n + 2) ++bits_;
    slots_.resize(size_t{1} << bits_);
  }

  // A pair seen again takes the later rank, as in the reference encoder's dict.
  void insert(int32_t left, int32_t right, int32_t rank, int32_t result) {
    const uint64_t k = key(left, right);
    slots_[probe(k)] = {k, rank, result};
  }

  const Entry* find(int32_t left, int32_t right) const {
    const Entry& e = slots_[probe(key(left, right))];
    return e.key == kEmpty ? nullptr : &e;
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  std::vector<Entry> slots_;
  int bits_ = 4;

  static uint64_t key(int32_t l, int32_t r) {
    return (uint64_t(uint32_t(l)) << 32) | uint32_t(r);
  }
  // The slot holding k, or the empty slot where it belongs.
  size_t probe(uint64_t k) const {
    const size_t mask = slots_.size() - 1;
    size_t i = size_t((k * 0x9E3779B97F4A7C15ull) >> (64 - bits_));
    while (slots_[i].key != kEmpty && slots_[i].key != k) i = (i + 1) & mask;
    return i;
  }
};

struct Sym {
  int32_t id;  // -1 once merged into its left neighbour
  int32_t prev, next;
};

struct Candidate {
  int32_t rank, pos, left, right, result;
  // std heap functions build a max-heap: the lowest (rank, pos) must compare greatest.
  bool operator<(const Candidate& o) const {
    return rank != o.rank ? rank > o.rank : pos > o.pos;
  }
};

// Per-thread memo of pre-token → ids for one model, plus the merge loop's scratch space.
struct ThreadCache {
  static constexpr size_t kMaxEntries = size_t{1} << 17;
  static constexpr size_t kMaxPieceBytes = 128;
  uint64_t owner = 0;
  StringMap<std::pair<uint32_t, uint32_t>> index;  // piece → (offset, count) in ids
  std::vector<int32_t> ids;
  std::vector<int32_t> unit_ids;
  std::vector<std::string_view> pieces;
  std::deque<std::string> arena;
  std::vector<Sym> syms;
  std::vector<Candidate> heap;
};
thread_local ThreadCache t_cache;

std::atomic<uint64_t> g_next_model_uid{0};

}  // namespace

struct Tokenizer::Model {
  std::vector<std::string> tokens;  // the BPE model's, by id
  std::vector<Merge> merges;
  std::vector<AddedToken> added;
  std::vector<int32_t> added_ids;
  std::vector<int32_t> added_index;  // by id: index into added, or -1
  // The added token with this id, or null.
  const AddedToken* added_at(int32_t id) const {
    return id >= 0 && size_t(id) < added_index.size() && added_index[id] >= 0 ? &added[size_t(added_index[id])] : nullptr;
  }
  AddedMatcher raw_matcher, normalized_matcher;
  StringMap<int32_t> ids;  // the BPE model's tokens
  std::array<int32_t, 256> byte_ids{};  // byte-level: each byte's token
  std::array<int32_t, 256> fallback_ids{};  // byte_fallback: <0xNN>, or -1
  BpeOptions opt;
  std::shared_ptr<const Pipeline> pipe;
  bool plain_units = true;  // byte-level without prefix or suffix: units are byte_ids
  MergeTable table;
  uint64_t uid = ++g_next_model_uid;

  explicit Model(size_t n_merges) : table(n_merges) {}

  void push_pair(ThreadCache& c, std::vector<Candidate>& into, int32_t pos) const {
    const int32_t next = c.syms[pos].next;
    if (next < 0) return;
    const int32_t l = c.syms[pos].id, r = c.syms[next].id;
    if (const auto* e = table.find(l, r)) into.push_back({e->rank, pos, l, r, e->result});
  }

  // The initial symbols of a pre-token: one per byte (byte-level) or character, with the
  // subword prefix and word suffix, byte fallback and unknowns applied (HF's merge_word).
  void units(std::string_view piece, std::vector<int32_t>& out) const {
    if (plain_units) {
      for (char ch : piece) out.push_back(byte_ids[uint8_t(ch)]);
      return;
    }
    const bool bytes = pipe->byte_level();
    int32_t unk_run = 0;  // pending unknowns (fused: one token)
    std::string unit;
    for (size_t i = 0; i < piece.size();) {
      const size_t at = i;
      i = bytes ? i + 1 : next_char_end(piece, i);
      unit.clear();
      if (at > 0) unit += opt.continuing_subword_prefix;
      unit.append(piece.substr(at, i - at));
      if (i == piece.size()) unit += opt.end_of_word_suffix;
      if (auto it = ids.find(unit); it != ids.end()) {
        for (; unk_run > 0; --unk_run) out.push_back(*opt.unk);
        out.push_back(it->second);
        continue;
      }
      if (opt.byte_fallback &&
          std::all_of(unit.begin(), unit.end(), [&](char b) { return fallback_ids[uint8_t(b)] >= 0; })) {
        for (; unk_run > 0; --unk_run) out.push_back(*opt.unk);
        for (char b : unit) out.push_back(fallback_ids[uint8_t(b)]);
        continue;
      }
      if (opt.unk) unk_run = opt.fuse_unk ? 1 : unk_run + 1;
    }
    for (; unk_run > 0; --unk_run) out.push_back(*opt.unk);
  }

  static size_t next_char_end(std::string_view s, size_t i) {
    ++i;
    while (i < s.size() && (uint8_t(s[i]) & 0xC0) == 0x80) ++i;
    return i;
  }

  // Appends the ids of one pre-token to c.ids.
  void bpe(std::string_view piece, ThreadCache& c) const {
    if (opt.ignore_merges) {
      if (auto it = ids.find(piece); it != ids.end()) {
        c.ids.push_back(it->second);
        return;
      }
    }
    c.unit_ids.clear();
    units(piece, c.unit_ids);
    const auto n = int32_t(c.unit_ids.size());
    if (n == 0) return;
    c.syms.resize(size_t(n));
    for (int32_t i = 0; i < n; ++i) c.syms[i] = {c.unit_ids[i], i - 1, i + 1 < n ? i + 1 : -1};
    c.heap.clear();
    for (int32_t i = 0; i + 1 < n; ++i) push_pair(c, c.heap, i);
    std::make_heap(c.heap.begin(), c.heap.end());
    while (!c.heap.empty()) {
      std::pop_heap(c.heap.begin(), c.heap.end());
      const Candidate k = c.heap.back();
      c.heap.pop_back();
      Sym& a = c.syms[k.pos];
      if (a.id != k.left || a.next < 0 || c.syms[a.next].id != k.right) continue;  // stale
      Sym& b = c.syms[a.next];
      a.id = k.result;
      b.id = -1;
      a.next = b.next;
      if (a.next >= 0) c.syms[a.next].prev = k.pos;
      // The pairs this merge makes join the queue at once: a merge's parts can come from merges
      // of higher rank (SentencePiece-converted files such as Gemma's), and then it comes next.
      const size_t before = c.heap.size();
      if (a.prev >= 0) push_pair(c, c.heap, a.prev);
      push_pair(c, c.heap, k.pos);
      for (size_t i = before; i < c.heap.size(); ++i)
        std::push_heap(c.heap.begin(), c.heap.begin() + ptrdiff_t(i) + 1);
    }
    for (int32_t i = 0; i >= 0; i = c.syms[i].next) c.ids.push_back(c.syms[i].id);
  }
};

namespace {

std::vector<AddedToken> as_added(const std::vector<std::string>& tokens,
                                 const std::vector<int32_t>& specials) {
  std::vector<AddedToken> out;
  for (int32_t id : specials) {
    LOOM_CHECK(id >= 0 && size_t(id) < tokens.size() && !tokens[id].empty(),
               "tokenizer: special token id {} is outside the vocabulary (size {})", id,
               tokens.size());
    out.push_back({.id = id, .content = tokens[id]});
  }
  return out;
}

}  // namespace

Tokenizer::Tokenizer(std::vector<std::string> tokens, std::vector<Merge> merges,
                     std::vector<int32_t> specials)
    : Tokenizer(tokens, std::move(merges), as_added(tokens, specials), {}, nullptr) {}

Tokenizer::Tokenizer(std::vector<std::string> tokens, std::vector<Merge> merges,
                     std::vector<AddedToken> added, BpeOptions options,
                     std::shared_ptr<const Pipeline> pipeline) {
  LOOM_CHECK(tokens.size() <= size_t(INT32_MAX), "tokenizer: {} tokens is too many",
             tokens.size());
  auto m = std::make_shared<Model>(merges.size());
  m->pipe = pipeline ? std::move(pipeline) : std::make_shared<const Pipeline>();
  m->opt = std::move(options);
  const auto n = int32_t(tokens.size());
  m->ids.reserve(tokens.size());
  for (int32_t id = 0; id < n; ++id) {
    if (tokens[id].empty()) continue;
    auto [it, fresh] = m->ids.emplace(tokens[id], id);
    LOOM_CHECK(fresh, "tokenizer: tokens {} and {} are both {:?}", it->second, id, tokens[id]);
  }
  if (m->pipe->byte_level()) {
    for (int b = 0; b < 256; ++b) {
      auto it = m->ids.find(std::string_view(reinterpret_cast<const char*>(&b), 1));
      LOOM_CHECK(it != m->ids.end(),
                 "tokenizer: byte 0x{:02X} has no token; a byte-level vocabulary needs all 256", b);
      m->byte_ids[b] = it->second;
    }
  }
  m->plain_units = m->pipe->byte_level() && m->opt.continuing_subword_prefix.empty() &&
                   m->opt.end_of_word_suffix.empty();
  for (int b = 0; b < 256; ++b) {
    auto it = m->ids.find(fmt::format("<0x{:02X}>", b));
    m->fallback_ids[b] = it == m->ids.end() ? -1 : it->second;
  }
  auto used = [&](int32_t id) { return id >= 0 && id < n && !tokens[id].empty(); };
  LOOM_CHECK(!m->opt.unk || used(*m->opt.unk), "tokenizer: the unknown token's id {} is not "
             "in the vocabulary", m->opt.unk.value_or(-1));
  const std::string& prefix = m->opt.continuing_subword_prefix;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto [l, r] = merges[rank];
    LOOM_CHECK(used(l) && used(r), "tokenizer: merge {} ({}, {}) names an id outside the "
               "vocabulary (size {})", rank, l, r, n);
    // HF: the right part loses the subword prefix it carries.
    std::string_view right = tokens[r];
    if (!prefix.empty() && right.starts_with(prefix)) right.remove_prefix(prefix.size());
    auto it = m->ids.find(tokens[l] + std::string(right));
    LOOM_CHECK(it != m->ids.end(), "tokenizer: merge {} ({:?} + {:?}) makes a string that is "
               "not a token", rank, tokens[l], tokens[r]);
    m->table.insert(l, r, int32_t(rank), it->second);
  }
  int32_t largest = n - 1;
  for (const AddedToken& t : added) {
    LOOM_CHECK(t.id >= 0 && !t.content.empty(), "tokenizer: added token {:?} needs an id >= 0 "
               "and content", t.content);
    largest = std::max(largest, t.id);
  }
  m->added_index.assign(size_t(largest) + 1, -1);
  for (AddedToken t : added) {
    LOOM_CHECK(m->added_index[t.id] < 0, "tokenizer: id {} is given to two added tokens", t.id);
    if (auto it = m->ids.find(t.content); it != m->ids.end())
      LOOM_CHECK(it->second == t.id, "tokenizer: added token {:?} has id {} but the vocabulary "
                 "gives it {}", t.content, t.id, it->second);
    // A normalized token is matched, and decoded, as its normalized content (as HF does).
    if (t.normalized && m->pipe->has_normalizer()) {
      t.content = m->pipe->normalize(t.content);
      m->normalized_matcher.add(t.content, t);
    } else {
      m->raw_matcher.add(t.content, t);
    }
    m->added_index[t.id] = int32_t(m->added.size());
    m->added_ids.push_back(t.id);
    m->added.push_back(std::move(t));
  }
  m->tokens = std::move(tokens);
  m->merges = std::move(merges);
  m_ = std::move(m);
}

// Text between added tokens: normalized, split by added tokens that match normalized text,
// then pre-tokenized and encoded.
void Tokenizer::encode_segment(std::string_view text, bool first, bool allow_special,
                               std::vector<int32_t>& out) const {
  const Model& m = *m_;
  if (!m.pipe->has_normalizer()) return encode_normalized(text, first, out);
  const std::string norm = m.pipe->normalize(text);
  if (!allow_special || m.normalized_matcher.empty()) return encode_normalized(norm, first, out);
  for (const auto& seg : m.normalized_matcher.split(norm)) {
    if (seg.id >= 0) out.push_back(seg.id);
    else encode_normalized(std::string_view(norm).substr(seg.begin, seg.end - seg.begin),
                           first && seg.begin == 0, out);
  }
}

void Tokenizer::encode_normalized(std::string_view text, bool first,
                                  std::vector<int32_t>& out) const {
  const Model& m = *m_;
  ThreadCache& c = t_cache;
  if (c.owner != m.uid) {
    c.index.clear();
    c.ids.clear();
    c.owner = m.uid;
  }
  auto encode_piece = [&](std::string_view piece) {
    if (piece.size() == 1 && m.plain_units) {
      out.push_back(m.byte_ids[uint8_t(piece[0])]);
      return;
    }
    if (auto it = c.index.find(piece); it != c.index.end()) {
      const auto [off, cnt] = it->second;
      out.insert(out.end(), c.ids.begin() + off, c.ids.begin() + off + cnt);
      return;
    }
    if (c.index.size() >= ThreadCache::kMaxEntries) {
      c.index.clear();
      c.ids.clear();
    }
    const size_t off = c.ids.size();
    m.bpe(piece, c);
    out.insert(out.end(), c.ids.begin() + off, c.ids.end());
    if (piece.size() <= ThreadCache::kMaxPieceBytes)
      c.index.emplace(piece, std::pair{uint32_t(off), uint32_t(c.ids.size() - off)});
    else
      c.ids.resize(off);
  };
  if (const std::optional<Spaces> spaces = m.pipe->gpt2_spaces()) {  // no list of pieces
    for (size_t pos = 0; pos < text.size();) {
      const size_t len = pretoken_length(text, pos, *spaces);
      encode_piece(text.substr(pos, len));
      pos += len;
    }
    return;
  }
  c.pieces.clear();
  c.arena.clear();
  m.pipe->pre_tokenize(text, first, c.pieces, c.arena);
  for (const std::string_view piece : c.pieces) encode_piece(piece);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool allow_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 1);
  const Model& m = *m_;
  std::string valid;
  if (!m.pipe->gpt2()) {
    valid = valid_utf8(text);
    text = valid;
  }
  if (!allow_special || m.raw_matcher.empty()) {
    encode_segment(text, true, allow_special, out);
    return out;
  }
  for (const auto& seg : m.raw_matcher.split(text)) {
    if (seg.id >= 0) out.push_back(seg.id);
    else encode_segment(text.substr(seg.begin, seg.end - seg.begin), seg.begin == 0, true, out);
  }
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  const Model& m = *m_;
  if (m.pipe->byte_level() && m.pipe->byte_level_decoder_only()) {  // the tokens' bytes
    std::string out;
    for (int32_t id : ids) {
      if (id >= 0 && size_t(id) < m.tokens.size() && !m.tokens[id].empty() && !m.added_at(id)) {
        out += m.tokens[id];
      } else {  // an added token in the byte alphabet stands for those bytes, as in ByteLevel
        const std::string_view t = token(id);
        const std::optional<std::string> bytes = from_byte_level(t);
        out += bytes ? *bytes : std::string(t);
      }
    }
    return out;
  }
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (!m.added_at(id) && m.pipe->byte_level())
      tokens.push_back(to_byte_level(token(id)));  // as the vocabulary writes it
    else
      tokens.emplace_back(token(id));
  }
  return m.pipe->decode(std::move(tokens));
}

int32_t Tokenizer::vocab_size() const {
  return int32_t(std::max(m_->tokens.size(), m_->added_index.size()));
}

bool Tokenizer::has_id(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return false;
  return m_->added_at(id) || (size_t(id) < m_->tokens.size() && !m_->tokens[id].empty());
}

std::string_view Tokenizer::token(int32_t id) const {
  LOOM_CHECK(has_id(id),
             "tokenizer: id {} is not in the vocabulary (size {})", id, vocab_size());
  if (const AddedToken* t = m_->added_at(id)) return t->content;
  return m_->tokens[id];
}

std::optional<int32_t> Tokenizer::token_id(std::string_view token) const {
  if (auto it = m_->ids.find(token); it != m_->ids.end()) return it->second;
  return special_id(token);
}

std::optional<int32_t> Tokenizer::special_id(std::string_view content) const {
  for (const AddedToken& t : m_->added)
    if (t.content == content) return t.id;
  return std::nullopt;
}

std::span<const int32_t> Tokenizer::specials() const { return m_->added_ids; }

bool Tokenizer::is_special(int32_t id) const {
  const AddedToken* t = m_->added_at(id);
  return t && t->special;
}

std::span<const Tokenizer::Merge> Tokenizer::merges() const { return m_->merges; }

const Pipeline& Tokenizer::pipeline() const { return *m_->pipe; }

const BpeOptions& Tokenizer::options() const { return m_->opt; }

}  // namespace loom::tokenizer
