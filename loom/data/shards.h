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
};

// Position in the stream; saved in checkpoints so a resumed run sees the same batches.
struct LoaderState {
  int64_t epoch = 0, index = 0;
};

// Without shuffle, batch k of an epoch reads tokens [k·B·T, k·B·T + B·T + 1) of the current
// shard, moving to the next shard when that does not fit (llm.c's order). With shuffle, each
// batch is B windows of T+1 tokens at multiples of T, in a seeded order that is a permutation
// of all windows of all shards, re-drawn every epoch. With data parallelism the global batch
// is B·parts rows and part p receives rows [p·B, (p+1)·B): the global batch and its order do
// not depend on how many parts it is split into.
class DataLoader {
 public:
  DataLoader(const std::string& spec, const std::string& key, int64_t B, int64_t T, bool shuffle, uint64_t seed, int64_t vocab_size,
             int64_t part = 0, int64_t parts = 1);
  Batch next();
  LoaderState state() const { return state_; }
  void set_state(LoaderState s) { state_ = s; }
  void reset() { state_ = {}; }
  int64_t batches_per_epoch() const;

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
  LoaderState state_;
};

}  // namespace loom::data
