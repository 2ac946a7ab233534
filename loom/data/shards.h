// Token shards in llm.c's format (magic 20240520; version 1 = uint16 tokens, version 2 =
// uint32 tokens for vocabularies over 65535), memory-mapped, and the batch loader over them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "loom/core/tensor.h"

namespace loom::data {

constexpr int32_t kShardMagic = 20240520;

class TokenShard {
 public:
  explicit TokenShard(const std::string& path);  // validates the header and the file size
  ~TokenShard();
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;
  int64_t size() const { return ntok_; }
  uint32_t at(int64_t i) const { return wide_ ? reinterpret_cast<const uint32_t*>(tokens_)[i] : reinterpret_cast<const uint16_t*>(tokens_)[i]; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  const void* tokens_ = nullptr;
  int64_t ntok_ = 0;
  bool wide_ = false;
};

// Writes a shard atomically (temp file + rename). uint32 tokens when wide.
void write_shard(const std::string& path, const std::vector<uint32_t>& tokens, bool wide);
// A shard file, a directory (its *.bin files, sorted) or a glob pattern -> sorted file list.
std::vector<std::string> expand_paths(const std::string& spec, const std::string& key);

struct Batch {
  Tensor inputs, targets;  // (B, T) i64 each
  int64_t first = -1;      // the position in the stream of row 0's sequence (rows follow on); -1: none
};

// The data is a stream of sequences: windows of T+1 tokens at multiples of T in each shard
// (a shard's tail shorter than a window is skipped), shard after shard, epoch after epoch.
// Without shuffle an epoch reads them in file order (llm.c's: batch k of B rows reads tokens
// [k·B·T, k·B·T + B·T + 1)); with shuffle in a seeded permutation of all windows of all shards,
// re-drawn every epoch. The position is the number of sequences consumed so far (Megatron's
// consumed_samples): each next() takes the following B·parts sequences, and part p receives
// rows [p·B, (p+1)·B) of them. The sequences a run sees therefore depend only on how many came
// before, never on how a global batch is split into ranks, micro-batches and rows.
class DataLoader {
 public:
  DataLoader(const std::string& spec, const std::string& key, int64_t B, int64_t T, bool shuffle, uint64_t seed, int64_t vocab_size,
             int64_t part = 0, int64_t parts = 1);
  Batch next();
  int64_t consumed() const { return consumed_; }  // sequences taken by every part together
  void set_consumed(int64_t n);
  void reset() { consumed_ = 0; }
  int64_t sequences_per_epoch() const { return first_window_.back(); }

 private:
  void read_window(int64_t w, int64_t* in, int64_t* tgt) const;  // global window w: T inputs, T targets
  const std::vector<int64_t>& order(int64_t epoch);
  std::vector<std::unique_ptr<TokenShard>> shards_;
  std::vector<int64_t> first_window_;  // per shard, global index of its first window; back() = total
  std::vector<int64_t> order_;         // window order of order_epoch_ (shuffle only)
  int64_t order_epoch_ = -1;
  std::string key_;
  int64_t B_, T_, vocab_, part_, parts_;
  bool shuffle_;
  uint64_t seed_;
  int64_t consumed_ = 0;
};

}  // namespace loom::data
