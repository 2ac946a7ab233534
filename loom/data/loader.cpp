// Shard windows and the batch loader.
#include "loom/data/loader.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "loom/core/error.h"
#include "loom/core/rng.h"
#include "loom/data/shards.h"

namespace loom::data {

namespace {

class ShardWindows : public Sequences {
 public:
  ShardWindows(const std::string& spec, const std::string& key, int64_t T, int64_t vocab_size) : key_(key), T_(T), vocab_(vocab_size) {
    LOOM_CHECK(T >= 1, "{}: sequence length {} must be positive", key, T);
    first_window_.push_back(0);
    for (const std::string& path : expand_paths(spec, key)) {
      shards_.push_back(std::make_unique<TokenShard>(path));
      first_window_.push_back(first_window_.back() + std::max<int64_t>(shards_.back()->size() - 1, 0) / T);
    }
  }
  int64_t size() const override { return first_window_.back(); }
  int64_t seq_len() const override { return T_; }
  void read(int64_t w, int64_t* in, int64_t* tgt, int64_t* pos) const override {
    const size_t s = size_t(std::upper_bound(first_window_.begin(), first_window_.end(), w) - first_window_.begin() - 1);
    const TokenShard& shard = *shards_[s];
    const int64_t start = (w - first_window_[s]) * T_;
    for (int64_t t = 0; t <= T_; ++t) {
      const uint32_t tok = shard.at(start + t);
      LOOM_CHECK(int64_t(tok) < vocab_, "{}: shard {} has token id {} at position {}, outside the vocabulary of {}", key_, shard.path(), tok,
                 start + t, vocab_);
      if (t < T_) {
        in[t] = tok;
        pos[t] = t;
      }
      if (t > 0) tgt[t - 1] = tok;
    }
  }

 private:
  std::vector<std::unique_ptr<TokenShard>> shards_;
  std::vector<int64_t> first_window_;  // per shard, global index of its first window; back() = total
  std::string key_;
  int64_t T_, vocab_;
};

}  // namespace

std::shared_ptr<const Sequences> shard_windows(const std::string& spec, const std::string& key, int64_t T, int64_t vocab_size) {
  return std::make_shared<ShardWindows>(spec, key, T, vocab_size);
}

DataLoader::DataLoader(std::shared_ptr<const Sequences> seqs, const std::string& key, int64_t B, bool shuffle, uint64_t seed, int64_t part,
                       int64_t parts, Replay replay)
    : main_{std::move(seqs), seed}, replay_{std::move(replay.seqs), seed + 1}, fraction_(replay.fraction), key_(key), B_(B), part_(part),
      parts_(parts), shuffle_(shuffle) {
  LOOM_CHECK(B >= 1, "{}: batch size {} must be positive", key, B);
  LOOM_CHECK(parts >= 1 && part >= 0 && part < parts, "{}: part {} of {} is invalid", key, part, parts);
  LOOM_CHECK(main_.seqs->size() >= B * parts, "{}: {} sequences of T = {} tokens, fewer than one batch of {}", key, main_.seqs->size(),
             main_.seqs->seq_len(), B * parts);
  if (replay_.seqs) {
    LOOM_CHECK(fraction_ >= 0 && fraction_ < 1, "{}: the replay fraction {} must be in [0, 1)", key, fraction_);
    LOOM_CHECK(replay_.seqs->size() > 0, "{}: the replay data holds no sequence of T+1 = {} tokens", key, main_.seqs->seq_len() + 1);
    LOOM_CHECK(replay_.seqs->seq_len() == main_.seqs->seq_len(), "{}: replay sequences of {} tokens differ from the data's {}", key,
               replay_.seqs->seq_len(), main_.seqs->seq_len());
  }
}

DataLoader::DataLoader(const std::string& spec, const std::string& key, int64_t B, int64_t T, bool shuffle, uint64_t seed, int64_t vocab_size,
                       int64_t part, int64_t parts)
    : DataLoader(shard_windows(spec, key, T, vocab_size), key, B, shuffle, seed, part, parts) {}

void DataLoader::set_consumed(int64_t n) {
  LOOM_CHECK(n >= 0, "{}: position {} is negative", key_, n);
  consumed_ = n;
}

int64_t DataLoader::Stream::index(int64_t k, bool shuffle) {
  const int64_t n = seqs->size(), epoch = k / n, slot = k % n;
  if (!shuffle) return slot;
  if (order_epoch != epoch) {
    order.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
    // Fisher-Yates with Philox draws keyed by (seed, epoch): the same order on every rank/run.
    const uint64_t stream = seed * 0x9E3779B97F4A7C15ull + uint64_t(epoch);
    for (int64_t i = n - 1; i > 0; --i) {
      auto r = philox4x32({uint32_t(i), uint32_t(uint64_t(i) >> 32), 0, 0}, {uint32_t(stream), uint32_t(stream >> 32)});
      const uint64_t bits = (uint64_t(r[0]) << 32) | r[1];
      std::swap(order[size_t(i)], order[size_t(bits % uint64_t(i + 1))]);
    }
    order_epoch = epoch;
  }
  return order[size_t(slot)];
}

Batch DataLoader::next() {
  // The position may come from a checkpoint's train_state.json: this batch must not overflow it.
  LOOM_CHECK(consumed_ <= std::numeric_limits<int64_t>::max() - B_ * parts_, "{}: position {} leaves no room for {} more sequences", key_,
             consumed_, B_ * parts_);
  const int64_t T = main_.seqs->seq_len();
  Batch b{Tensor::empty({B_, T}, DType::i64), Tensor::empty({B_, T}, DType::i64), Tensor::empty({B_, T}, DType::i64), consumed_ + part_ * B_};
  auto replayed = [&](int64_t k) { return replay_.seqs ? int64_t(std::floor(double(k) * fraction_)) : 0; };  // replay sequences before k
  for (int64_t i = 0; i < B_; ++i) {
    const int64_t k = consumed_ + part_ * B_ + i, r = replayed(k);
    const bool replay = replayed(k + 1) > r;
    Stream& s = replay ? replay_ : main_;
    s.seqs->read(s.index(replay ? r : k - r, shuffle_), b.inputs.data<int64_t>() + i * T, b.targets.data<int64_t>() + i * T,
                 b.positions.data<int64_t>() + i * T);
  }
  if (!main_.seqs->packed()) b.positions = Tensor();
  consumed_ += B_ * parts_;
  return b;
}

}  // namespace loom::data
