// Sharded training checkpoints: the per-rank slice files, the index that must tile every
// tensor exactly, and the reader that serves any range from whichever files hold it. The index
// is checked as strictly on read as on write: a hand-edited or truncated one must fail loudly.
#include "loom/io/sharded_checkpoint.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <mutex>
#include <set>

#include "loom/io/file_util.h"
#include "loom/ops/shape.h"

namespace loom::io {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kFormat = "loom-sharded";
constexpr int64_t kVersion = 1;
constexpr const char* kIndexName = "index.json";

// A JSON value for an error message, cut short: the index may be arbitrarily large or hostile.
std::string brief(const json& j) {
  std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() > 80 ? s.substr(0, 80) + "..." : s;
}

bool as_i64(const json& j, int64_t& out) {
  if (j.is_number_unsigned()) {
    if (j.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())) return false;
    out = int64_t(j.get<uint64_t>());
    return true;
  }
  if (!j.is_number_integer()) return false;
  out = j.get<int64_t>();
  return true;
}

// The element count of shape. The extent (zero sizes taken as 1) must fit as well, since it
// bounds the strides of a tensor made in that shape.
int64_t checked_numel(const Shape& shape, const std::string& at) {
  LOOM_CHECK(shape.size() <= size_t(kMaxDims), "{}: shape {} has more than {} dimensions", at, shape, kMaxDims);
  int64_t numel = 1, extent = 1;
  for (int64_t d : shape) {
    LOOM_CHECK(d >= 0, "{}: shape {} has a negative size", at, shape);
    LOOM_CHECK(!__builtin_mul_overflow(extent, std::max<int64_t>(d, 1), &extent), "{}: shape {} overflows a 64-bit element count", at,
               shape);
    numel *= d;
  }
  return numel;
}

bool is_plain_file_name(const std::string& s) {
  return !s.empty() && s != "." && s.find('/') == std::string::npos && s.find("..") == std::string::npos &&
         s.find('\0') == std::string::npos;
}

// One range of a tensor and the file that holds it.
struct Piece {
  int64_t begin, end;
  std::string file;
};

// Sorts pieces by begin and checks that they tile [0, numel) exactly. `noun` is what the
// caller calls a piece ("slice" when writing, "shard" when reading).
void check_tiling(const std::string& where, const std::string& name, int64_t numel, std::vector<Piece>& pieces, const char* noun) {
  std::stable_sort(pieces.begin(), pieces.end(), [](const Piece& a, const Piece& b) { return a.begin < b.begin; });
  LOOM_CHECK(numel == 0 || !pieces.empty(), "{}: tensor {} ({} elements) has no {}s", where, name, numel, noun);
  int64_t covered = 0;  // [0, covered) is tiled by the pieces seen so far
  const Piece* prev = nullptr;
  for (const Piece& p : pieces) {
    LOOM_CHECK(p.begin <= covered, "{}: tensor {}: elements [{}, {}) are in no {}", where, name, covered, p.begin, noun);
    LOOM_CHECK(p.begin == covered, "{}: tensor {}: {} [{}, {}) in {} overlaps {} [{}, {}) in {}", where, name, noun, p.begin, p.end, p.file,
               noun, prev->begin, prev->end, prev->file);
    covered = p.end;
    prev = &p;
  }
  LOOM_CHECK(covered == numel, "{}: tensor {}: elements [{}, {}) are in no {}", where, name, covered, numel, noun);
}

const json& field(const json& obj, const char* key, const std::string& at) {
  LOOM_CHECK(obj.contains(key), "{}: no \"{}\" field", at, key);
  return obj[key];
}

struct ParsedTensor {
  Shape shape;
  std::vector<Piece> pieces;  // sorted by begin, tiling [0, numel)
};

Shape parse_shape(const json& js, const std::string& at) {
  LOOM_CHECK(js.is_array(), "{}: shape {} is not a list", at, brief(js));
  Shape shape;
  for (const json& d : js) {
    int64_t n = 0;
    LOOM_CHECK(as_i64(d, n) && n >= 0, "{}: shape {} holds {}, not a non-negative integer", at, brief(js), brief(d));
    shape.push_back(n);
  }
  return shape;
}

ParsedTensor parse_tensor(const std::string& where, const std::string& name, const json& v) {
  const std::string at = fmt::format("{}: tensor {}", where, name);
  LOOM_CHECK(v.is_object(), "{}: entry {} is not an object", at, brief(v));
  ParsedTensor t;
  t.shape = parse_shape(field(v, "shape", at), at);
  const int64_t numel = checked_numel(t.shape, at);
  const json& dtype = field(v, "dtype", at);
  LOOM_CHECK(dtype == "F32", "{}: dtype {} is not \"F32\"", at, brief(dtype));
  const json& shards = field(v, "shards", at);
  LOOM_CHECK(shards.is_array(), "{}: \"shards\" {} is not a list", at, brief(shards));
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string sat = fmt::format("{}: shard {}", at, i);
    const json& s = shards[i];
    LOOM_CHECK(s.is_object(), "{}: {} is not an object", sat, brief(s));
    const json &file = field(s, "file", sat), &jb = field(s, "begin", sat), &je = field(s, "end", sat);
    LOOM_CHECK(file.is_string() && is_plain_file_name(file.get<std::string>()),
               "{}: file {} is not a plain file name (no '/' or '..') inside the checkpoint", sat, brief(file));
    Piece p{0, 0, file.get<std::string>()};
    LOOM_CHECK(as_i64(jb, p.begin) && as_i64(je, p.end), "{}: begin {} and end {} are not both integers", sat, brief(jb), brief(je));
    LOOM_CHECK(0 <= p.begin && p.begin < p.end && p.end <= numel, "{}: range [{}, {}) in {} is empty or outside [0, {})", sat, p.begin,
               p.end, p.file, numel);
    t.pieces.push_back(std::move(p));
  }
  check_tiling(where, name, numel, t.pieces, "shard");
  return t;
}

}  // namespace

std::string rank_file_name(int rank) {
  LOOM_CHECK(rank >= 0, "sharded: rank {} is negative", rank);
  return fmt::format("rank{:05d}.safetensors", rank);
}

void write_rank_shard(const fs::path& dir, int rank, const std::vector<std::pair<FlatSlice, Tensor>>& slices) {
  const fs::path path = dir / rank_file_name(rank);
  const std::string where = fmt::format("sharded: {} (rank {})", path.string(), rank);
  TensorMap tensors;
  for (const auto& [slice, data] : slices) {
    const std::string at = fmt::format("{}: slice {} [{}, {})", where, slice.name, slice.begin, slice.end);
    LOOM_CHECK(0 <= slice.begin && slice.begin < slice.end, "{}: the range is empty or negative", at);
    LOOM_CHECK(data.defined() && data.dtype() == DType::f32, "{}: data is {}, not f32", at,
               data.defined() ? dtype_name(data.dtype()) : "undefined");
    LOOM_CHECK(data.numel() == slice.end - slice.begin, "{}: data of shape {} holds {} elements, the range {}", at, data.shape(),
               data.numel(), slice.end - slice.begin);
    // One file holds one tensor per name, so a rank has at most one slice of each tensor.
    LOOM_CHECK(tensors.emplace(slice.name, ops::flatten(data.detach())).second, "{}: a second slice of {} for the same file", at,
               slice.name);
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  LOOM_CHECK(fs::is_directory(dir), "{}: cannot create directory {}: {}", where, dir.string(), ec.message());
  write_safetensors(path, tensors);
}

void write_shard_index(const fs::path& dir, const std::map<std::string, Shape>& shapes, const std::vector<std::vector<FlatSlice>>& owned,
                       const json& metadata) {
  const fs::path path = dir / kIndexName;
  const std::string where = "sharded: " + path.string();
  std::map<std::string, int64_t> numel;
  std::map<std::string, std::vector<Piece>> pieces;
  for (const auto& [name, shape] : shapes) {
    numel[name] = checked_numel(shape, fmt::format("{}: tensor {}", where, name));
    pieces[name];
  }
  for (size_t r = 0; r < owned.size(); ++r) {
    std::set<std::string> seen;
    for (const FlatSlice& s : owned[r]) {
      const std::string at = fmt::format("{}: rank {}: slice [{}, {}) of tensor {}", where, r, s.begin, s.end, s.name);
      auto it = numel.find(s.name);
      LOOM_CHECK(it != numel.end(), "{}: no such tensor among the shapes", at);
      LOOM_CHECK(0 <= s.begin && s.begin < s.end && s.end <= it->second, "{}: the range is empty or outside [0, {})", at, it->second);
      LOOM_CHECK(seen.insert(s.name).second, "{}: the rank has a second slice of this tensor (its file holds one)", at);
      pieces[s.name].push_back(Piece{s.begin, s.end, rank_file_name(int(r))});
    }
  }

  nlohmann::ordered_json tensors = nlohmann::ordered_json::object();
  for (auto& [name, list] : pieces) {
    check_tiling(where, name, numel[name], list, "slice");
    nlohmann::ordered_json shards = nlohmann::ordered_json::array();
    for (const Piece& p : list) shards.push_back({{"file", p.file}, {"begin", p.begin}, {"end", p.end}});
    tensors[name] = {{"shape", shapes.at(name)}, {"dtype", "F32"}, {"shards", std::move(shards)}};
  }
  nlohmann::ordered_json root;
  root["format"] = kFormat;
  root["version"] = kVersion;
  std::string text;
  try {
    root["metadata"] = nlohmann::ordered_json::parse(metadata.dump());
    root["tensors"] = std::move(tensors);
    text = root.dump(1) + "\n";
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: metadata cannot be written as JSON: {}", where, e.what()));
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  LOOM_CHECK(fs::is_directory(dir), "{}: cannot create directory {}: {}", where, dir.string(), ec.message());
  AtomicFile file(path);
  file.write(text);
  file.commit();
}

bool is_sharded_checkpoint(const fs::path& dir) {
  const fs::path path = dir / kIndexName;
  if (!fs::is_regular_file(path)) return false;
  const json j = parse_json(read_text_file(path), "sharded: " + path.string());
  return j.is_object() && j.contains("format") && j["format"] == kFormat;
}

struct ShardedCheckpoint::OpenFiles {
  std::mutex mutex;
  std::vector<std::unique_ptr<TensorMap>> files;  // per file index; null until first read
};

ShardedCheckpoint::ShardedCheckpoint(const fs::path& dir) : dir_(dir), index_path_(dir / kIndexName), open_(std::make_shared<OpenFiles>()) {
  const std::string where = "sharded: " + index_path_.string();
  LOOM_CHECK(fs::is_regular_file(index_path_), "{}: no such file (not a sharded checkpoint, or an incomplete one)", where);
  const json root = parse_json(read_text_file(index_path_), where);
  LOOM_CHECK(root.is_object(), "{}: top level {} is not an object", where, brief(root));
  const json& format = field(root, "format", where);
  LOOM_CHECK(format == kFormat, "{}: \"format\" is {}, not \"{}\"", where, brief(format), kFormat);
  const json& version = field(root, "version", where);
  int64_t v = 0;
  LOOM_CHECK(as_i64(version, v) && v == kVersion, "{}: \"version\" is {}; this reader knows version {}", where, brief(version), kVersion);
  metadata_ = field(root, "metadata", where);
  const json& tensors = field(root, "tensors", where);
  LOOM_CHECK(tensors.is_object(), "{}: \"tensors\" {} is not an object", where, brief(tensors));

  std::map<std::string, size_t> file_index;
  for (const auto& [name, value] : tensors.items()) {
    ParsedTensor t = parse_tensor(where, name, value);
    std::vector<Shard>& shards = shards_[name];
    for (const Piece& p : t.pieces) {
      auto [it, added] = file_index.emplace(p.file, files_.size());
      if (added) files_.push_back(p.file);
      shards.push_back(Shard{it->second, p.begin, p.end});
    }
    shapes_[name] = std::move(t.shape);
  }
  open_->files.resize(files_.size());
}

Tensor ShardedCheckpoint::shard_tensor(const std::string& name, const Shard& shard) const {
  const fs::path path = dir_ / files_[shard.file];
  const TensorMap* file = nullptr;
  {
    std::lock_guard<std::mutex> lock(open_->mutex);
    std::unique_ptr<TensorMap>& slot = open_->files[shard.file];
    try {
      if (!slot) slot = std::make_unique<TensorMap>(read_safetensors(path));
    } catch (const Error& e) {
      throw Error(fmt::format("sharded: reading tensor {} [{}, {}): {}", name, shard.begin, shard.end, e.what()));
    }
    file = slot.get();
  }
  const std::string at = fmt::format("sharded: {}: tensor {}", path.string(), name);
  auto it = file->find(name);
  LOOM_CHECK(it != file->end(), "{}: missing (index.json puts its range [{}, {}) in this file)", at, shard.begin, shard.end);
  const Tensor& t = it->second;
  LOOM_CHECK(t.dtype() == DType::f32, "{}: dtype is {}, not f32", at, dtype_name(t.dtype()));
  LOOM_CHECK(t.ndim() == 1 && t.numel() == shard.end - shard.begin,
             "{}: shape {} is not [{}], the length of its range [{}, {}) in index.json", at, t.shape(), shard.end - shard.begin,
             shard.begin, shard.end);
  return t;
}

void ShardedCheckpoint::read(const std::string& name, int64_t begin, int64_t end, Tensor& out) const {
  const std::string at = fmt::format("sharded: {}: tensor {}", index_path_.string(), name);
  auto it = shards_.find(name);
  LOOM_CHECK(it != shards_.end(), "{}: not in the checkpoint", at);
  const int64_t numel = numel_of(shapes_.at(name));
  LOOM_CHECK(0 <= begin && begin <= end && end <= numel, "{}: range [{}, {}) is outside [0, {})", at, begin, end, numel);
  LOOM_CHECK(out.defined() && out.device().is_cpu() && out.dtype() == DType::f32 && out.is_contiguous() && out.numel() == end - begin,
             "{}: reading [{}, {}) needs a contiguous CPU f32 tensor of {} elements to write to", at, begin, end, end - begin);
  if (begin == end) return;  // nothing to read, and out has no memory to copy to
  float* dst = out.data<float>();
  const std::vector<Shard>& shards = it->second;
  auto s = std::partition_point(shards.begin(), shards.end(), [&](const Shard& sh) { return sh.end <= begin; });
  for (; s != shards.end() && s->begin < end; ++s) {
    const int64_t lo = std::max(begin, s->begin), hi = std::min(end, s->end);
    const Tensor src = shard_tensor(name, *s);
    std::memcpy(dst + (lo - begin), src.data<float>() + (lo - s->begin), size_t(hi - lo) * sizeof(float));
  }
}

Tensor ShardedCheckpoint::read(const std::string& name) const {
  auto it = shapes_.find(name);
  LOOM_CHECK(it != shapes_.end(), "sharded: {}: tensor {}: not in the checkpoint", index_path_.string(), name);
  Tensor out = Tensor::empty(it->second);
  read(name, 0, out.numel(), out);
  return out;
}

}  // namespace loom::io
