// Byte-level BPE encoding and decoding. Within a pre-token the merge of lowest rank is applied
// to all its occurrences, left to right, before the next rank is considered (the reference
// encoder's order), using a heap so that long pre-tokens stay O(n log n).
#include "loom/tokenizer/bpe.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <unordered_map>

#include "loom/core/error.h"
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
  std::vector<Sym> syms;
  std::vector<Candidate> heap, pending;
};
thread_local ThreadCache t_cache;

std::atomic<uint64_t> g_next_model_uid{0};

}  // namespace

struct Tokenizer::Model {
  std::vector<std::string> tokens;
  std::vector<Merge> merges;
  std::vector<int32_t> specials;
  std::vector<int32_t> specials_longest_first;
  std::array<bool, 256> special_first_byte{};
  StringMap<int32_t> ids;
  std::array<int32_t, 256> byte_ids{};
  MergeTable table;
  uint64_t uid = ++g_next_model_uid;

  explicit Model(size_t n_merges) : table(n_merges) {}

  void push_pair(ThreadCache& c, std::vector<Candidate>& into, int32_t pos) const {
    const int32_t next = c.syms[pos].next;
    if (next < 0) return;
    const int32_t l = c.syms[pos].id, r = c.syms[next].id;
    if (const auto* e = table.find(l, r)) into.push_back({e->rank, pos, l, r, e->result});
  }

  // Appends the ids of one pre-token to c.ids.
  void bpe(std::string_view piece, ThreadCache& c) const {
    const auto n = int32_t(piece.size());
    c.syms.resize(piece.size());
    for (int32_t i = 0; i < n; ++i)
      c.syms[i] = {byte_ids[uint8_t(piece[i])], i - 1, i + 1 < n ? i + 1 : -1};
    c.heap.clear();
    for (int32_t i = 0; i + 1 < n; ++i) push_pair(c, c.heap, i);
    std::make_heap(c.heap.begin(), c.heap.end());
    while (!c.heap.empty()) {
      // One rank at a time: every occurrence, left to right; pairs it creates wait until after.
      const int32_t rank = c.heap.front().rank;
      c.pending.clear();
      while (!c.heap.empty() && c.heap.front().rank == rank) {
        std::pop_heap(c.heap.begin(), c.heap.end());
        const Candidate k = c.heap.back();
        c.heap.pop_back();
        Sym& a = c.syms[k.pos];
        if (a.id != k.left || a.next < 0 || c.syms[a.next].id != k.right) continue;
        Sym& b = c.syms[a.next];
        a.id = k.result;
        b.id = -1;
        a.next = b.next;
        if (a.next >= 0) c.syms[a.next].prev = k.pos;
        if (a.prev >= 0) push_pair(c, c.pending, a.prev);
        push_pair(c, c.pending, k.pos);
      }
      for (const Candidate& p : c.pending) {
        c.heap.push_back(p);
        std::push_heap(c.heap.begin(), c.heap.end());
      }
    }
    for (int32_t i = 0; i >= 0; i = c.syms[i].next) c.ids.push_back(c.syms[i].id);
  }
};

Tokenizer::Tokenizer(std::vector<std::string> tokens, std::vector<Merge> merges,
                     std::vector<int32_t> specials) {
  LOOM_CHECK(tokens.size() <= size_t(INT32_MAX), "tokenizer: {} tokens is too many",
             tokens.size());
  auto m = std::make_shared<Model>(merges.size());
  const auto n = int32_t(tokens.size());
  m->ids.reserve(tokens.size());
  for (int32_t id = 0; id < n; ++id) {
    if (tokens[id].empty()) continue;
    auto [it, fresh] = m->ids.emplace(tokens[id], id);
    LOOM_CHECK(fresh, "tokenizer: tokens {} and {} are both {:?}", it->second, id, tokens[id]);
  }
  for (int b = 0; b < 256; ++b) {
    auto it = m->ids.find(std::string_view(reinterpret_cast<const char*>(&b), 1));
    LOOM_CHECK(it != m->ids.end(),
               "tokenizer: byte 0x{:02X} has no token; a byte-level vocabulary needs all 256", b);
    m->byte_ids[b] = it->second;
  }
  auto used = [&](int32_t id) { return id >= 0 && id < n && !tokens[id].empty(); };
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto [l, r] = merges[rank];
    LOOM_CHECK(used(l) && used(r), "tokenizer: merge {} ({}, {}) names an id outside the "
               "vocabulary (size {})", rank, l, r, n);
    auto it = m->ids.find(tokens[l] + tokens[r]);
    LOOM_CHECK(it != m->ids.end(), "tokenizer: merge {} ({:?} + {:?}) makes a string that is "
               "not a token", rank, tokens[l], tokens[r]);
    m->table.insert(l, r, int32_t(rank), it->second);
  }
  for (int32_t id : specials) {
    LOOM_CHECK(used(id), "tokenizer: special token id {} is outside the vocabulary (size {})",
               id, n);
    m->special_first_byte[uint8_t(tokens[id][0])] = true;
  }
  m->specials_longest_first = specials;
  std::stable_sort(m->specials_longest_first.begin(), m->specials_longest_first.end(),
                   [&](int32_t a, int32_t b) { return tokens[a].size() > tokens[b].size(); });
  m->tokens = std::move(tokens);
  m->merges = std::move(merges);
  m->specials = std::move(specials);
  m_ = std::move(m);
}

void Tokenizer::encode_ordinary(std::string_view text, std::vector<int32_t>& out) const {
  const Model& m = *m_;
  ThreadCache& c = t_cache;
  if (c.owner != m.uid) {
    c.index.clear();
    c.ids.clear();
    c.owner = m.uid;
  }
  for (size_t pos = 0; pos < text.size();) {
    const size_t len = pretoken_length(text, pos);
    const std::string_view piece = text.substr(pos, len);
    pos += len;
    if (len == 1) {
      out.push_back(m.byte_ids[uint8_t(piece[0])]);
      continue;
    }
    if (auto it = c.index.find(piece); it != c.index.end()) {
      const auto [off, cnt] = it->second;
      out.insert(out.end(), c.ids.begin() + off, c.ids.begin() + off + cnt);
      continue;
    }
    if (c.index.size() >= ThreadCache::kMaxEntries) {
      c.index.clear();
      c.ids.clear();
    }
    const size_t off = c.ids.size();
    m.bpe(piece, c);
    out.insert(out.end(), c.ids.begin() + off, c.ids.end());
    if (len <= ThreadCache::kMaxPieceBytes)
      c.index.emplace(piece, std::pair{uint32_t(off), uint32_t(c.ids.size() - off)});
    else
      c.ids.resize(off);
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool allow_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 1);
  const Model& m = *m_;
  if (!allow_special || m.specials.empty()) {
    encode_ordinary(text, out);
    return out;
  }
  size_t start = 0;
  for (size_t pos = 0; pos < text.size();) {
    int32_t found = -1;
    if (m.special_first_byte[uint8_t(text[pos])]) {
      for (int32_t id : m.specials_longest_first) {
        if (text.substr(pos).starts_with(m.tokens[id])) {
          found = id;
          break;
        }
      }
    }
    if (found < 0) {
      ++pos;
      continue;
    }
    encode_ordinary(text.substr(start, pos - start), out);
    out.push_back(found);
    pos += m.tokens[found].size();
    start = pos;
  }
  encode_ordinary(text.substr(start), out);
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  for (int32_t id : ids) out += token(id);
  return out;
}

int32_t Tokenizer::vocab_size() const { return int32_t(m_->tokens.size()); }

bool Tokenizer::has_id(int32_t id) const {
  return id >= 0 && id < vocab_size() && !m_->tokens[id].empty();
}

std::string_view Tokenizer::token(int32_t id) const {
  LOOM_CHECK(has_id(id),
             "tokenizer: id {} is not in the vocabulary (size {})", id, vocab_size());
  return m_->tokens[id];
}

std::optional<int32_t> Tokenizer::token_id(std::string_view bytes) const {
  auto it = m_->ids.find(bytes);
  if (it == m_->ids.end()) return std::nullopt;
  return it->second;
}

std::optional<int32_t> Tokenizer::special_id(std::string_view content) const {
  for (int32_t id : m_->specials)
    if (m_->tokens[id] == content) return id;
  return std::nullopt;
}

std::span<const int32_t> Tokenizer::specials() const { return m_->specials; }

std::span<const Tokenizer::Merge> Tokenizer::merges() const { return m_->merges; }

}  // namespace loom::tokenizer
