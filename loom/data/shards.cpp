// Shard files (mmap, validated) and the batch loader.
#include "loom/data/shards.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>

#include "loom/core/error.h"
#include "loom/core/rng.h"
#include "loom/io/file_util.h"

namespace loom::data {

namespace fs = std::filesystem;

TokenShard::TokenShard(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  LOOM_CHECK(fd >= 0, "data: cannot open shard {}: {}", path, std::strerror(errno));
  struct stat st {};
  ::fstat(fd, &st);
  map_bytes_ = size_t(st.st_size);
  if (map_bytes_ >= 1024) map_ = ::mmap(nullptr, map_bytes_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  LOOM_CHECK(map_bytes_ >= 1024, "data: shard {} is {} bytes, shorter than the 1024-byte header", path, map_bytes_);
  LOOM_CHECK(map_ != MAP_FAILED, "data: cannot map shard {}", path);
  const int32_t* h = static_cast<const int32_t*>(map_);
  auto fail = [&](const std::string& msg) {
    ::munmap(map_, map_bytes_);
    throw Error(msg);
  };
  if (h[0] != kShardMagic) fail(fmt::format("data: shard {} has bad magic {} (expected {})", path, h[0], kShardMagic));
  if (h[1] != 1 && h[1] != 2) fail(fmt::format("data: shard {} has unsupported version {} (1 = uint16, 2 = uint32 tokens)", path, h[1]));
  wide_ = h[1] == 2;
  // Token count: header slot 2 (llm.c); slot 3 holds the high 32 bits for huge uint32 shards.
  // Compared with the count the file holds, not multiplied out: a count near 2^64 would wrap.
  const uint64_t ntok = uint64_t(uint32_t(h[2])) | (uint64_t(uint32_t(h[3])) << 32), width = wide_ ? 4 : 2;
  if (ntok != (map_bytes_ - 1024) / width || (map_bytes_ - 1024) % width != 0)
    fail(fmt::format("data: shard {} is {} bytes but its header promises {} tokens of {} bytes after the 1024-byte header; truncated or "
                     "corrupt", path, map_bytes_, ntok, width));
  ntok_ = int64_t(ntok);
  tokens_ = static_cast<const char*>(map_) + 1024;
}

TokenShard::~TokenShard() {
  if (map_ && map_ != MAP_FAILED) ::munmap(map_, map_bytes_);
}

void write_shard(const std::string& path, const std::vector<uint32_t>& tokens, bool wide) {
  std::vector<int32_t> header(256, 0);
  header[0] = kShardMagic;
  header[1] = wide ? 2 : 1;
  header[2] = int32_t(uint32_t(tokens.size()));
  header[3] = int32_t(uint32_t(uint64_t(tokens.size()) >> 32));
  io::AtomicFile f(path);
  f.write(header.data(), 1024);
  if (wide) {
    f.write(tokens.data(), tokens.size() * 4);
  } else {
    std::vector<uint16_t> narrow(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) {
      LOOM_CHECK(tokens[i] <= 0xffff, "data: token {} does not fit a uint16 shard {}", tokens[i], path);
      narrow[i] = uint16_t(tokens[i]);
    }
    f.write(narrow.data(), narrow.size() * 2);
  }
  f.commit();
}

std::vector<std::string> expand_paths(const std::string& spec, const std::string& key) {
  std::vector<std::string> out;
  if (fs::is_directory(spec)) {
    for (const auto& e : fs::directory_iterator(spec))
      if (e.is_regular_file() && e.path().extension() == ".bin") out.push_back(e.path().string());
  } else if (spec.find_first_of("*?[") != std::string::npos) {
    glob_t g{};
    if (::glob(spec.c_str(), 0, nullptr, &g) == 0)
      for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
    ::globfree(&g);
  } else if (fs::exists(spec)) {
    out.push_back(spec);
  }
  LOOM_CHECK(!out.empty(), "{}: no shard files match '{}'", key, spec);
  std::sort(out.begin(), out.end());
  return out;
}

DataLoader::DataLoader(const std::string& spec, const std::string& key, int64_t B, int64_t T, bool shuffle, uint64_t seed,
                       int64_t vocab_size, int64_t part, int64_t parts)
    : key_(key), B_(B), T_(T), vocab_(vocab_size), part_(part), parts_(parts), shuffle_(shuffle), seed_(seed) {
  LOOM_CHECK(B >= 1 && T >= 1, "{}: batch size {} and sequence length {} must be positive", key, B, T);
  LOOM_CHECK(parts >= 1 && part >= 0 && part < parts, "{}: part {} of {} is invalid", key, part, parts);
  first_window_.push_back(0);
  for (const std::string& path : expand_paths(spec, key)) {
    shards_.push_back(std::make_unique<TokenShard>(path));
    first_window_.push_back(first_window_.back() + std::max<int64_t>(shards_.back()->size() - 1, 0) / T);
  }
  LOOM_CHECK(first_window_.back() >= B * parts, "{}: '{}' holds {} sequences of T+1 = {} tokens, fewer than one batch of {}", key, spec,
             first_window_.back(), T + 1, B * parts);
}

void DataLoader::set_consumed(int64_t n) {
  LOOM_CHECK(n >= 0, "{}: position {} is negative", key_, n);
  consumed_ = n;
}

const std::vector<int64_t>& DataLoader::order(int64_t epoch) {
  if (order_epoch_ != epoch) {
    const int64_t n = first_window_.back();
    order_.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) order_[size_t(i)] = i;
    // Fisher-Yates with Philox draws keyed by (seed, epoch): the same order on every rank/run.
    const uint64_t stream = seed_ * 0x9E3779B97F4A7C15ull + uint64_t(epoch);
    for (int64_t i = n - 1; i > 0; --i) {
      auto r = philox4x32({uint32_t(i), uint32_t(uint64_t(i) >> 32), 0, 0}, {uint32_t(stream), uint32_t(stream >> 32)});
      const uint64_t bits = (uint64_t(r[0]) << 32) | r[1];
      std::swap(order_[size_t(i)], order_[size_t(bits % uint64_t(i + 1))]);
    }
    order_epoch_ = epoch;
  }
  return order_;
}

void DataLoader::read_window(int64_t w, int64_t* in, int64_t* tgt) const {
  const size_t s = size_t(std::upper_bound(first_window_.begin(), first_window_.end(), w) - first_window_.begin() - 1);
  const TokenShard& shard = *shards_[s];
  const int64_t start = (w - first_window_[s]) * T_;
  for (int64_t t = 0; t <= T_; ++t) {
    const uint32_t tok = shard.at(start + t);
    LOOM_CHECK(int64_t(tok) < vocab_, "{}: shard {} has token id {} at position {}, outside the vocabulary of {}", key_, shard.path(), tok,
               start + t, vocab_);
    if (t < T_) in[t] = tok;
    if (t > 0) tgt[t - 1] = tok;
  }
}

Batch DataLoader::next() {
  // The position may come from a checkpoint's train_state.json: this batch must not overflow it.
  LOOM_CHECK(consumed_ <= std::numeric_limits<int64_t>::max() - B_ * parts_, "{}: position {} leaves no room for {} more sequences", key_,
             consumed_, B_ * parts_);
  Batch b{Tensor::empty({B_, T_}, DType::i64), Tensor::empty({B_, T_}, DType::i64), consumed_ + part_ * B_};
  const int64_t per_epoch = sequences_per_epoch();
  for (int64_t i = 0; i < B_; ++i) {
    const int64_t seq = consumed_ + part_ * B_ + i, epoch = seq / per_epoch, slot = seq % per_epoch;
    const int64_t w = shuffle_ ? order(epoch)[size_t(slot)] : slot;
    read_window(w, b.inputs.data<int64_t>() + i * T_, b.targets.data<int64_t>() + i * T_);
  }
  consumed_ += B_ * parts_;
  return b;
}

}  // namespace loom::data
