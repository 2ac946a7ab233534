// BPE training over pre-token counts. Each distinct pre-token is a word with a count; pair
// counts and a pair → words index are updated incrementally after each merge, and a lazy
// max-heap picks the next pair, so a merge costs time in the words it touches only.
#include "loom/tokenizer/train.h"

#include <algorithm>
#include <unordered_map>

#include "loom/core/error.h"
#include "loom/tokenizer/pretokenize.h"

namespace loom::tokenizer {

namespace {

uint64_t pair_key(int32_t l, int32_t r) { return (uint64_t(uint32_t(l)) << 32) | uint32_t(r); }

struct Word {
  std::vector<int32_t> syms;
  int64_t count;
};

struct HeapEntry {
  int64_t count;
  uint64_t key;
  // Max-heap order: more frequent first, then the smaller (left, right).
  bool operator<(const HeapEntry& o) const {
    return count != o.count ? count < o.count : key > o.key;
  }
};

// Counts the pre-tokens of `texts`, skipping the special tokens' occurrences.
std::unordered_map<std::string_view, int64_t> count_pretokens(
    std::span<const std::string> texts, std::span<const std::string> specials) {
  std::unordered_map<std::string_view, int64_t> counts;
  auto add = [&](std::string_view s) {
    for (size_t pos = 0; pos < s.size();) {
      const size_t n = pretoken_length(s, pos);
      ++counts[s.substr(pos, n)];
      pos += n;
    }
  };
  for (const std::string& t : texts) {
    std::string_view rest = t;
    while (!rest.empty()) {
      size_t at = rest.size(), len = 0;
      for (const std::string& sp : specials) {
        const size_t p = rest.find(sp);
        if (p < at || (p == at && p != rest.size() && sp.size() > len)) {
          at = p;
          len = sp.size();
        }
      }
      add(rest.substr(0, at));
      rest.remove_prefix(std::min(rest.size(), at + len));
    }
  }
  return counts;
}

class Trainer {
 public:
  explicit Trainer(const std::unordered_map<std::string_view, int64_t>& counts) {
    for (int b = 0; b < 256; ++b) {
      tokens_.emplace_back(1, char(b));
      ids_.emplace(tokens_.back(), b);
    }
    for (const auto& [piece, count] : counts) {
      Word w{{}, count};
      for (unsigned char b : piece) w.syms.push_back(b);
      words_.push_back(std::move(w));
    }
    for (int32_t w = 0; w < int32_t(words_.size()); ++w) add_pairs(w, -1);
    for (const auto& [key, count] : pair_counts_) heap_.push_back({count, key});
    std::make_heap(heap_.begin(), heap_.end());
  }

  // Learns merges until there are `target` tokens or no pair is left.
  void run(size_t target) {
    while (tokens_.size() < target) {
      const auto best = pop_best();
      if (!best) return;
      merge(*best);
    }
  }

  std::vector<std::string> take_tokens() { return std::move(tokens_); }
  std::vector<Tokenizer::Merge> take_merges() { return std::move(merges_); }

 private:
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int32_t> ids_;
  std::vector<Tokenizer::Merge> merges_;
  std::vector<Word> words_;
  std::unordered_map<uint64_t, int64_t> pair_counts_;
  std::unordered_map<uint64_t, std::vector<int32_t>> where_;  // may hold stale words
  std::vector<HeapEntry> heap_;
  std::vector<uint64_t> fresh_;  // pairs made by the current merge

  // Adds word w's pairs to the counts; those containing `made` are new and get indexed.
  void add_pairs(int32_t w, int32_t made) {
    const Word& word = words_[w];
    for (size_t i = 0; i + 1 < word.syms.size(); ++i) {
      const int32_t l = word.syms[i], r = word.syms[i + 1];
      const uint64_t k = pair_key(l, r);
      pair_counts_[k] += word.count;
      if (made >= 0 && l != made && r != made) continue;
      auto& ws = where_[k];
      if (ws.empty() || ws.back() != w) ws.push_back(w);
      if (made >= 0) fresh_.push_back(k);
    }
  }

  void remove_pairs(int32_t w) {
    const Word& word = words_[w];
    for (size_t i = 0; i + 1 < word.syms.size(); ++i)
      pair_counts_[pair_key(word.syms[i], word.syms[i + 1])] -= word.count;
  }

  std::optional<uint64_t> pop_best() {
    while (!heap_.empty()) {
      std::pop_heap(heap_.begin(), heap_.end());
      const HeapEntry e = heap_.back();
      heap_.pop_back();
      const auto it = pair_counts_.find(e.key);
      const int64_t now = it == pair_counts_.end() ? 0 : it->second;
      if (now == e.count && now > 0) return e.key;
      if (now > 0 && now < e.count) {  // the count fell since it was pushed
        heap_.push_back({now, e.key});
        std::push_heap(heap_.begin(), heap_.end());
      }
    }
    return std::nullopt;
  }

  void merge(uint64_t key) {
    const auto l = int32_t(key >> 32), r = int32_t(uint32_t(key));
    std::string bytes = tokens_[l] + tokens_[r];
    auto [it, fresh_token] = ids_.emplace(bytes, int32_t(tokens_.size()));
    if (fresh_token) tokens_.push_back(std::move(bytes));
    const int32_t made = it->second;
    merges_.push_back({l, r});

    std::vector<int32_t> ws = std::move(where_[key]);
    where_.erase(key);
    std::sort(ws.begin(), ws.end());
    ws.erase(std::unique(ws.begin(), ws.end()), ws.end());
    fresh_.clear();
    for (int32_t w : ws) {
      std::vector<int32_t>& s = words_[w].syms;
      bool has = false;
      for (size_t i = 0; i + 1 < s.size() && !has; ++i) has = s[i] == l && s[i + 1] == r;
      if (!has) continue;
      remove_pairs(w);
      size_t out = 0;
      for (size_t i = 0; i < s.size(); ++out) {
        const bool hit = i + 1 < s.size() && s[i] == l && s[i + 1] == r;
        s[out] = hit ? made : s[i];
        i += hit ? 2 : 1;
      }
      s.resize(out);
      add_pairs(w, made);
    }
    pair_counts_.erase(key);
    std::sort(fresh_.begin(), fresh_.end());
    fresh_.erase(std::unique(fresh_.begin(), fresh_.end()), fresh_.end());
    for (uint64_t k : fresh_) {
      heap_.push_back({pair_counts_[k], k});
      std::push_heap(heap_.begin(), heap_.end());
    }
  }
};

}  // namespace

Tokenizer train(std::span<const std::string> texts, int32_t vocab_size,
                std::span<const std::string> special_tokens) {
  LOOM_CHECK(vocab_size >= 0 && size_t(vocab_size) >= 256 + special_tokens.size(),
             "tokenizer.train: vocab_size {} is below the 256 byte tokens + {} special tokens",
             vocab_size, special_tokens.size());
  for (const std::string& s : special_tokens)
    LOOM_CHECK(!s.empty(), "tokenizer.train: a special token is empty");
  Trainer trainer(count_pretokens(texts, special_tokens));
  trainer.run(size_t(vocab_size) - special_tokens.size());
  std::vector<std::string> tokens = trainer.take_tokens();
  std::vector<int32_t> specials;
  for (const std::string& s : special_tokens) {
    specials.push_back(int32_t(tokens.size()));
    tokens.push_back(s);
  }
  return Tokenizer(std::move(tokens), trainer.take_merges(), std::move(specials));
}

}  // namespace loom::tokenizer
