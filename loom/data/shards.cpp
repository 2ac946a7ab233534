// Shard files (mmap, validated).
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

}  // namespace loom::data
