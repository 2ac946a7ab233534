// Token shards in llm.c's format (magic 20240520; version 1 = uint16 tokens, version 2 =
// uint32 tokens for vocabularies over 65535), memory-mapped.
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

}  // namespace loom::data
