// Sharded training checkpoints: the per-rank slice files, the index that must tile every
// tensor exactly, and the reader that serves any part from whichever files hold it. The index
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
constexpr int64_t kVersion = 2;  // 2 added shard boxes; 1 reads as before
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

// One range of a tensor (of its box, when the box is not empty) and the file that holds it.
struct Piece {
  int64_t begin, end;
  std::string file;
  Shape offset = {}, box = {};
};

// An N-D block of a tensor.
struct Box {
  Shape offset, shape;
};

// Appends to out the boxes that make up elements [begin, end) of the flattening of the box
// `shape` at `offset` (at most 2·ndim - 1 of them), from dim d on below the fixed prefix.
void flat_to_boxes(const Shape& offset, const Shape& shape, int64_t begin, int64_t end, std::vector<Box>& out, size_t d = 0, Box prefix = {}) {
  if (begin >= end) return;
  if (d == shape.size()) return out.push_back(std::move(prefix));
  int64_t inner = 1;
  for (size_t k = d + 1; k < shape.size(); ++k) inner *= shape[k];
  auto whole_rows = [&](int64_t r0, int64_t r1) {  // rows [r0, r1) of dim d, everything below them
    Box b = prefix;
    for (size_t k = d; k < shape.size(); ++k) {
      b.offset.push_back(offset[k] + (k == d ? r0 : 0));
      b.shape.push_back(k == d ? r1 - r0 : shape[k]);
    }
    out.push_back(std::move(b));
  };
  auto part_row = [&](int64_t r, int64_t lo, int64_t hi) {  // elements [lo, hi) of row r
    if (lo == 0 && hi == inner) return whole_rows(r, r + 1);
    Box b = prefix;
    b.offset.push_back(offset[d] + r);
    b.shape.push_back(1);
    flat_to_boxes(offset, shape, lo, hi, out, d + 1, std::move(b));
  };
  const int64_t r0 = begin / inner, r1 = (end - 1) / inner;
  if (r0 == r1) return part_row(r0, begin - r0 * inner, end - r0 * inner);
  if (begin % inner) part_row(r0, begin % inner, inner);
  if ((begin + inner - 1) / inner < end / inner) whole_rows((begin + inner - 1) / inner, end / inner);
  if (end % inner) part_row(r1, 0, end % inner);
}

std::string describe(const Piece& p) {
  return p.box.empty() ? fmt::format("[{}, {}) in {}", p.begin, p.end, p.file)
                       : fmt::format("[{}, {}) of box {} at {} in {}", p.begin, p.end, p.box, p.offset, p.file);
}

// Checks that pieces some of which have boxes cover a tensor of `shape` exactly: their boxes'
// volumes add up to its size and no two overlap.
void check_box_tiling(const std::string& where, const std::string& name, const Shape& shape, const std::vector<Piece>& pieces,
                      const char* noun) {
  std::vector<std::pair<Box, const Piece*>> boxes;
  int64_t covered = 0;
  for (const Piece& p : pieces) {
    std::vector<Box> bs;
    flat_to_boxes(p.box.empty() ? Shape(shape.size(), 0) : p.offset, p.box.empty() ? shape : p.box, p.begin, p.end, bs);
    for (Box& b : bs) boxes.emplace_back(std::move(b), &p);
    covered += p.end - p.begin;
  }
  std::sort(boxes.begin(), boxes.end(), [](const auto& a, const auto& b) { return a.first.offset < b.first.offset; });
  for (size_t i = 0; i < boxes.size(); ++i)
    for (size_t j = i + 1; j < boxes.size() && boxes[j].first.offset[0] < boxes[i].first.offset[0] + boxes[i].first.shape[0]; ++j) {
      bool overlap = true;
      for (size_t d = 0; d < shape.size() && overlap; ++d) {
        const Box &a = boxes[i].first, &b = boxes[j].first;
        overlap = a.offset[d] < b.offset[d] + b.shape[d] && b.offset[d] < a.offset[d] + a.shape[d];
      }
      LOOM_CHECK(!overlap, "{}: tensor {}: {} {} overlaps {} {}", where, name, noun, describe(*boxes[j].second), noun, describe(*boxes[i].second));
    }
  LOOM_CHECK(covered == numel_of(shape), "{}: tensor {}: {} of its {} elements are in no {}", where, name, numel_of(shape) - covered,
             numel_of(shape), noun);
}

// Checks a piece's box against the tensor's shape and its range against the box's size; `at`
// names the piece for the error.
void check_piece(const std::string& at, const Shape& shape, const Piece& p) {
  int64_t size = numel_of(shape);
  if (!p.box.empty() || !p.offset.empty()) {
    LOOM_CHECK(p.box.size() == shape.size() && p.offset.size() == shape.size(),
               "{}: box {} at {} does not have the {} dimensions of the tensor's shape {}", at, p.box, p.offset, shape.size(), shape);
    for (size_t d = 0; d < shape.size(); ++d)
      LOOM_CHECK(p.offset[d] >= 0 && p.box[d] >= 1 && p.box[d] <= shape[d] - p.offset[d], "{}: box {} at {} is empty or outside the shape {}",
                 at, p.box, p.offset, shape);
    size = numel_of(p.box);
  }
  LOOM_CHECK(0 <= p.begin && p.begin < p.end && p.end <= size, "{}: range [{}, {}) in {} is empty or outside [0, {})", at, p.begin, p.end,
             p.file, size);
}

// Sorts pieces without boxes by begin and checks that they tile [0, numel) exactly. `noun` is
// what the caller calls a piece ("slice" when writing, "shard" when reading).
void check_flat_tiling(const std::string& where, const std::string& name, int64_t numel, std::vector<Piece>& pieces, const char* noun) {
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

void check_tiling(const std::string& where, const std::string& name, const Shape& shape, std::vector<Piece>& pieces, const char* noun) {
  if (std::any_of(pieces.begin(), pieces.end(), [](const Piece& p) { return !p.box.empty(); }))
    check_box_tiling(where, name, shape, pieces, noun);
  else
    check_flat_tiling(where, name, numel_of(shape), pieces, noun);
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
  checked_numel(t.shape, at);
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
    LOOM_CHECK(s.contains("box") == s.contains("offset"), "{}: has one of \"box\" and \"offset\" without the other", sat);
    if (s.contains("box")) {
      p.box = parse_shape(s["box"], sat);
      p.offset = parse_shape(s["offset"], sat);
    }
    check_piece(sat, t.shape, p);
    t.pieces.push_back(std::move(p));
  }
  check_tiling(where, name, t.shape, t.pieces, "shard");
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
  std::map<std::string, std::vector<Piece>> pieces;
  for (const auto& [name, shape] : shapes) {
    checked_numel(shape, fmt::format("{}: tensor {}", where, name));
    pieces[name];
  }
  for (size_t r = 0; r < owned.size(); ++r) {
    std::set<std::string> seen;
    for (const FlatSlice& s : owned[r]) {
      const std::string at = fmt::format("{}: rank {}: slice [{}, {}) of tensor {}", where, r, s.begin, s.end, s.name);
      auto it = shapes.find(s.name);
      LOOM_CHECK(it != shapes.end(), "{}: no such tensor among the shapes", at);
      Piece p{s.begin, s.end, rank_file_name(int(r)), s.offset, s.box};
      check_piece(at, it->second, p);
      LOOM_CHECK(seen.insert(s.name).second, "{}: the rank has a second slice of this tensor (its file holds one)", at);
      pieces[s.name].push_back(std::move(p));
    }
  }

  nlohmann::ordered_json tensors = nlohmann::ordered_json::object();
  for (auto& [name, list] : pieces) {
    check_tiling(where, name, shapes.at(name), list, "slice");
    nlohmann::ordered_json shards = nlohmann::ordered_json::array();
    for (const Piece& p : list) {
      nlohmann::ordered_json shard = {{"file", p.file}, {"begin", p.begin}, {"end", p.end}};
      if (!p.box.empty()) shard["offset"] = p.offset, shard["box"] = p.box;
      shards.push_back(std::move(shard));
    }
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
  LOOM_CHECK(as_i64(version, v) && v >= 1 && v <= kVersion, "{}: \"version\" is {}; this reader knows versions 1 to {}", where,
             brief(version), kVersion);
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
      shards.push_back(Shard{it->second, p.begin, p.end, p.offset, p.box});
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

void ShardedCheckpoint::read(const FlatSlice& part, Tensor& out) const {
  const std::string& name = part.name;
  const int64_t begin = part.begin, end = part.end;
  const std::string at = fmt::format("sharded: {}: tensor {}", index_path_.string(), name);
  auto it = shards_.find(name);
  LOOM_CHECK(it != shards_.end(), "{}: not in the checkpoint", at);
  const Shape& shape = shapes_.at(name);
  const Shape& box = part.box.empty() ? shape : part.box;
  const Shape offset = part.box.empty() ? Shape(shape.size(), 0) : part.offset;
  LOOM_CHECK(box.size() == shape.size() && offset.size() == shape.size(), "{}: box {} at {} does not fit its shape {}", at, part.box,
             part.offset, shape);
  for (size_t d = 0; d < shape.size(); ++d)
    LOOM_CHECK(offset[d] >= 0 && box[d] >= 0 && offset[d] + box[d] <= shape[d], "{}: box {} at {} is outside its shape {}", at, box, offset, shape);
  const int64_t numel = numel_of(box);
  LOOM_CHECK(0 <= begin && begin <= end && end <= numel, "{}: range [{}, {}) is outside [0, {})", at, begin, end, numel);
  LOOM_CHECK(out.defined() && out.device().is_cpu() && out.dtype() == DType::f32 && out.is_contiguous() && out.numel() == end - begin,
             "{}: reading [{}, {}) needs a contiguous CPU f32 tensor of {} elements to write to", at, begin, end, end - begin);
  if (begin == end) return;  // nothing to read, and out has no memory to copy to
  float* dst = out.data<float>();
  const std::vector<Shard>& shards = it->second;
  const bool flat = part.box.empty() && std::all_of(shards.begin(), shards.end(), [](const Shard& sh) { return sh.box.empty(); });
  if (flat || shape.empty()) {  // ranges of one flattening: one copy per shard
    auto s = std::partition_point(shards.begin(), shards.end(), [&](const Shard& sh) { return sh.end <= begin; });
    for (; s != shards.end() && s->begin < end; ++s) {
      const int64_t lo = std::max(begin, s->begin), hi = std::min(end, s->end);
      const Tensor src = shard_tensor(name, *s);
      std::memcpy(dst + (lo - begin), src.data<float>() + (lo - s->begin), size_t(hi - lo) * sizeof(float));
    }
    return;
  }
  // Boxes: row by row along the last dim. Each row of the part meets each shard in at most one
  // run of its flattening.
  const size_t n = shape.size();
  const int64_t cols = box[n - 1];
  int64_t copied = 0;
  std::vector<int64_t> g(n);  // global coordinates of the row's first element
  for (int64_t row = begin / cols; row * cols < end; ++row) {
    const int64_t c0 = std::max<int64_t>(begin - row * cols, 0), c1 = std::min<int64_t>(end - row * cols, cols);
    for (int64_t r = row, d = int64_t(n) - 2; d >= 0; --d) g[size_t(d)] = offset[size_t(d)] + r % box[size_t(d)], r /= box[size_t(d)];
    for (const Shard& sh : shards) {
      const Shape& sbox = sh.box.empty() ? shape : sh.box;
      const Shape soff = sh.box.empty() ? Shape(n, 0) : sh.offset;
      int64_t f = 0;  // the shard-local flat index of (g, soff[n-1]): the start of this row in the shard
      bool inside = true;
      for (size_t d = 0; d + 1 < n && inside; ++d) {
        inside = g[d] >= soff[d] && g[d] < soff[d] + sbox[d];
        f = f * sbox[d] + (g[d] - soff[d]);
      }
      if (!inside) continue;
      f *= sbox[n - 1];
      // Global columns of the run, clipped to the shard's box, then to its range.
      const int64_t x0 = std::max(offset[n - 1] + c0, soff[n - 1]), x1 = std::min(offset[n - 1] + c1, soff[n - 1] + sbox[n - 1]);
      const int64_t y0 = std::max(f + x0 - soff[n - 1], sh.begin), y1 = std::min(f + x1 - soff[n - 1], sh.end);
      if (y0 >= y1) continue;
      const Tensor src = shard_tensor(name, sh);
      const int64_t col = y0 - f + soff[n - 1] - offset[n - 1];  // the part's column of y0
      std::memcpy(dst + (row * cols + col - begin), src.data<float>() + (y0 - sh.begin), size_t(y1 - y0) * sizeof(float));
      copied += y1 - y0;
    }
  }
  LOOM_CHECK(copied == end - begin, "{}: {} of the {} elements asked for are in no shard", at, end - begin - copied, end - begin);
}

Tensor ShardedCheckpoint::read(const std::string& name) const {
  auto it = shapes_.find(name);
  LOOM_CHECK(it != shapes_.end(), "sharded: {}: tensor {}: not in the checkpoint", index_path_.string(), name);
  Tensor out = Tensor::empty(it->second);
  read(name, 0, out.numel(), out);
  return out;
}

}  // namespace loom::io
