// Atomic file writes, whole-file reads and maps, and strict JSON parsing.
#include "loom/io/file_util.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include "loom/core/error.h"

namespace loom::io {

namespace fs = std::filesystem;

fs::path temp_path_for(const fs::path& path) {
  fs::path p = path;
  p += ".tmp." + std::to_string(::getpid());
  return p;
}

AtomicFile::AtomicFile(fs::path path) : path_(std::move(path)), tmp_(temp_path_for(path_)) {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  LOOM_CHECK(fd_ >= 0, "io: cannot create {}: {}", tmp_.string(), std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void AtomicFile::write(const void* data, size_t nbytes) {
  LOOM_CHECK(fd_ >= 0, "io: write to {} after commit", path_.string());
  const char* p = static_cast<const char*>(data);
  while (nbytes > 0) {
    ssize_t n = ::write(fd_, p, nbytes);
    if (n < 0 && errno == EINTR) continue;
    LOOM_CHECK(n > 0, "io: writing {} failed: {}", tmp_.string(), std::strerror(errno));
    p += n;
    nbytes -= size_t(n);
  }
}

void AtomicFile::commit() {
  LOOM_CHECK(fd_ >= 0, "io: {} committed twice", path_.string());
  LOOM_CHECK(::fsync(fd_) == 0, "io: flushing {} failed: {}", tmp_.string(), std::strerror(errno));
  int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0 || ::rename(tmp_.c_str(), path_.c_str()) != 0) {
    std::string why = std::strerror(errno);
    ::unlink(tmp_.c_str());
    throw Error(fmt::format("io: cannot move {} to {}: {}", tmp_.string(), path_.string(), why));
  }
}

std::shared_ptr<Storage> map_file(const fs::path& path, std::string_view what, size_t min_bytes, std::string_view header) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  LOOM_CHECK(fd >= 0, "{}: cannot open {}: {}", what, path.string(), std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(fmt::format("{}: {} is not a regular file", what, path.string()));
  }
  const size_t size = size_t(st.st_size);
  if (size < std::max<size_t>(min_bytes, 1)) {
    ::close(fd);
    throw Error(fmt::format("{}: {}: file is {} bytes, shorter than the {}", what, path.string(), size, header));
  }
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);
  LOOM_CHECK(p != MAP_FAILED, "{}: cannot map {}: {}", what, path.string(), std::strerror(err));
  return Storage::wrap(p, size, [p, size] { ::munmap(p, size); });
}

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  LOOM_CHECK(in.good(), "io: cannot open {}: {}", path.string(), std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  LOOM_CHECK(!in.bad(), "io: reading {} failed", path.string());
  return ss.str();
}

template <class Json>
Json parse_json(std::string_view text, const std::string& where) {
  // nlohmann keeps the last of repeated keys; a stack of the keys seen per open object finds
  // them. Nesting is capped so no later recursive walk (dump, say) can exhaust the stack.
  constexpr int kMaxDepth = 64;
  std::vector<std::set<std::string>> open;
  std::string duplicate;
  auto cb = [&](int depth, typename Json::parse_event_t event, Json& parsed) {
    using E = typename Json::parse_event_t;
    LOOM_CHECK(depth <= kMaxDepth, "{}: JSON nested deeper than {} levels", where, kMaxDepth);
    if (event == E::object_start) open.emplace_back();
    if (event == E::object_end && !open.empty()) open.pop_back();
    if (event == E::key && !open.empty() && !open.back().insert(parsed.template get<std::string>()).second && duplicate.empty())
      duplicate = parsed.template get<std::string>();
    return true;
  };
  Json j;
  try {
    j = Json::parse(text.begin(), text.end(), cb);
  } catch (const nlohmann::json::exception& e) {
    std::string what = e.what();  // quotes the last token, which a hostile file can make huge
    if (what.size() > 300) what = what.substr(0, 300) + "...";
    throw Error(fmt::format("{}: invalid JSON: {}", where, what));
  }
  LOOM_CHECK(duplicate.empty(), "{}: key '{}' appears twice in one JSON object", where, duplicate);
  return j;
}

template nlohmann::json parse_json(std::string_view, const std::string&);
template nlohmann::ordered_json parse_json(std::string_view, const std::string&);

void for_each_json_line(const std::filesystem::path& file, const std::string& what,
                        const std::function<void(const nlohmann::ordered_json&, int64_t)>& fn) {
  std::ifstream f(file, std::ios::binary);
  LOOM_CHECK(f.good(), "{}: cannot read {}", what, file.string());
  std::string line;
  for (int64_t n = 1; std::getline(f, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string at = fmt::format("{}: {} line {}", what, file.string(), n);
    const auto j = parse_json<nlohmann::ordered_json>(line, at);
    try {
      fn(j, n);
    } catch (const nlohmann::json::exception& e) {
      throw Error(fmt::format("{}: {}", at, e.what()));
    } catch (const Error& e) {
      throw Error(fmt::format("{}: {}", at, e.what()));
    }
  }
}

std::string text_field(const nlohmann::ordered_json& j) {
  LOOM_CHECK(j.is_object() && j.contains("text") && j["text"].is_string(), "expected a JSON object with a string \"text\" field, got {}",
             j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).substr(0, 80));
  return j["text"].get<std::string>();
}

}  // namespace loom::io
