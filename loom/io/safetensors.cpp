// safetensors reader (mmap + header validation), writer (reference layout, atomic) and the
// sharded-directory reader.
#include "loom/io/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <vector>

#include "loom/io/file_util.h"
#include "loom/ops/shape.h"

namespace loom::io {

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference reader's limit

struct DTypeInfo {
  const char* name;
  DType dtype;
  int order;  // position in the safetensors crate's Dtype enum (increasing alignment)
};
constexpr DTypeInfo kDTypes[] = {
    {"U8", DType::u8, 1},    {"F16", DType::f16, 7},  {"BF16", DType::bf16, 8}, {"I32", DType::i32, 9},
    {"F32", DType::f32, 11}, {"F64", DType::f64, 12}, {"I64", DType::i64, 13},
};

const DTypeInfo& info_of(DType t) {
  for (const auto& d : kDTypes)
    if (d.dtype == t) return d;
  throw Error(fmt::format("safetensors: dtype {} has no safetensors name", dtype_name(t)));
}

// A JSON value for an error message, cut short: the header is attacker-controlled.
std::string brief(const json& j) {
  std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() > 80 ? s.substr(0, 80) + "..." : s;
}

bool as_u64(const json& j, uint64_t& out) {
  if (!j.is_number_unsigned()) return false;
  out = j.get<uint64_t>();
  return true;
}

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

Entry parse_entry(const std::string& where, const std::string& name, const json& v, uint64_t buffer_bytes) {
  const std::string at = fmt::format("{}: tensor {}", where, name);
  LOOM_CHECK(v.is_object(), "{}: entry {} is not an object", at, brief(v));
  for (const char* key : {"dtype", "shape", "data_offsets"}) LOOM_CHECK(v.contains(key), "{}: no \"{}\" field", at, key);
  const json& jd = v["dtype"];
  const json& js = v["shape"];
  const json& jo = v["data_offsets"];

  LOOM_CHECK(jd.is_string(), "{}: dtype {} is not a string", at, brief(jd));
  const DTypeInfo* info = nullptr;
  for (const auto& d : kDTypes)
    if (jd.get<std::string>() == d.name) info = &d;
  LOOM_CHECK(info, "{}: dtype {} is not supported (F32, F64, BF16, F16, I32, I64, U8)", at, brief(jd));

  LOOM_CHECK(js.is_array() && js.size() <= size_t(kMaxDims), "{}: shape {} is not a list of at most {} sizes", at, brief(js), kMaxDims);
  // extent (the product with zero sizes taken as 1) bounds every stride, so it must fit too.
  Shape shape;
  uint64_t extent = 1, numel = 1, nbytes = 0;
  for (const json& d : js) {
    uint64_t n = 0;
    LOOM_CHECK(as_u64(d, n), "{}: shape {} holds {}, not a non-negative integer", at, brief(js), brief(d));
    LOOM_CHECK(
        !__builtin_mul_overflow(extent, std::max<uint64_t>(n, 1), &extent) && extent <= uint64_t(std::numeric_limits<int64_t>::max()),
        "{}: shape {} overflows a 64-bit element count", at, brief(js));
    numel *= n;
    shape.push_back(int64_t(n));
  }
  LOOM_CHECK(!__builtin_mul_overflow(numel, uint64_t(dtype_size(info->dtype)), &nbytes), "{}: {} shape {} overflows a 64-bit byte count",
             at, info->name, brief(js));

  uint64_t begin = 0, end = 0;
  LOOM_CHECK(jo.is_array() && jo.size() == 2 && as_u64(jo[0], begin) && as_u64(jo[1], end),
             "{}: data_offsets {} is not a pair of non-negative integers", at, brief(jo));
  LOOM_CHECK(begin <= end && end <= buffer_bytes, "{}: data_offsets [{}, {}] lie outside the data buffer of {} bytes (truncated file?)", at,
             begin, end, buffer_bytes);
  LOOM_CHECK(end - begin == nbytes, "{}: data_offsets [{}, {}] do not match {} {} ({} bytes)", at, begin, end, info->name, shape, nbytes);
  return Entry{name, info->dtype, std::move(shape), begin, end};
}

// Checks the header against a data buffer of buffer_bytes; fills metadata when asked.
std::vector<Entry> parse_header(const std::string& where, const json& header, uint64_t buffer_bytes, Metadata* metadata) {
  LOOM_CHECK(header.is_object(), "{}: header {} is not a JSON object", where, brief(header));
  std::vector<Entry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key != "__metadata__") {
      entries.push_back(parse_entry(where, key, value, buffer_bytes));
      continue;
    }
    LOOM_CHECK(value.is_object(), "{}: __metadata__ {} is not an object", where, brief(value));
    for (const auto& [k, v] : value.items()) {
      LOOM_CHECK(v.is_string(), "{}: __metadata__ value of '{}' is {}, not a string", where, k, brief(v));
      if (metadata) (*metadata)[k] = v.get<std::string>();
    }
  }
  std::vector<const Entry*> by_offset;
  for (const Entry& e : entries)
    if (e.end > e.begin) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](const Entry* a, const Entry* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const Entry &a = *by_offset[i - 1], &b = *by_offset[i];
    LOOM_CHECK(b.begin >= a.end, "{}: tensor {}: data_offsets [{}, {}] overlap tensor {} at [{}, {}]", where, b.name, b.begin, b.end,
               a.name, a.begin, a.end);
  }
  return entries;
}

}  // namespace

TensorMap read_safetensors(const fs::path& path, Metadata* metadata) {
  const std::string where = "safetensors: " + path.string();
  std::shared_ptr<Storage> file = map_file(path, "safetensors", 8, "8-byte header size");
  const auto* bytes = static_cast<const char*>(file->data());
  const uint64_t size = file->nbytes();
  uint64_t n = 0;
  std::memcpy(&n, bytes, 8);
  LOOM_CHECK(n <= size - 8, "{}: header size {} exceeds the {} bytes after the 8-byte prefix", where, n, size - 8);
  LOOM_CHECK(n <= kMaxHeaderBytes, "{}: header size {} is over the {}-byte limit", where, n, kMaxHeaderBytes);
  const json header = parse_json(std::string_view(bytes + 8, n), where + ": header");

  const uint64_t data_start = 8 + n;
  TensorMap out;
  for (Entry& e : parse_header(where, header, size - data_start, metadata)) {
    const uint64_t at = data_start + e.begin, esize = dtype_size(e.dtype);
    Tensor t;
    if (at % esize == 0) {
      t = Tensor::from_storage(file, e.shape, e.dtype, int64_t(at / esize));
    } else {
      t = Tensor::empty(e.shape, e.dtype);
      if (e.end > e.begin) std::memcpy(t.raw_data(), bytes + at, e.end - e.begin);  // an empty tensor has no memory
    }
    out.emplace(std::move(e.name), std::move(t));
  }
  return out;
}

void write_safetensors(const fs::path& path, const TensorMap& tensors, const Metadata& metadata) {
  const std::string where = "safetensors: " + path.string();
  std::vector<std::pair<const std::string*, Tensor>> order;
  for (const auto& [name, t] : tensors) {
    LOOM_CHECK(name != "__metadata__", "{}: '__metadata__' is reserved and cannot name a tensor", where);
    LOOM_CHECK(t.defined() && t.device().is_cpu(), "{}: tensor {} is undefined or not on the CPU", where, name);
    order.emplace_back(&name, ops::contiguous(t.detach()));
  }
  std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return info_of(a.second.dtype()).order > info_of(b.second.dtype()).order;  // names stay sorted within a dtype
  });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : order) {
    header[*name] = {{"dtype", info_of(t.dtype()).name}, {"shape", t.shape()}, {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: a tensor name or metadata string is not valid UTF-8 ({})", where, e.what()));
  }
  text.append((8 - text.size() % 8) % 8, ' ');

  AtomicFile file(path);
  const uint64_t n = text.size();
  file.write(&n, 8);
  file.write(text);
  for (const auto& [name, t] : order) file.write(t.raw_data(), t.nbytes());
  file.commit();
}

TensorMap read_safetensors_dir(const fs::path& dir) {
  LOOM_CHECK(fs::is_directory(dir), "safetensors: {} is not a directory", dir.string());
  const fs::path index_path = dir / "model.safetensors.index.json";
  if (!fs::exists(index_path)) {
    LOOM_CHECK(fs::exists(dir / "model.safetensors"), "safetensors: {} holds neither model.safetensors.index.json nor model.safetensors",
               dir.string());
    return read_safetensors(dir / "model.safetensors");
  }
  const std::string where = "safetensors: " + index_path.string();
  const json index = parse_json(read_text_file(index_path), where);
  LOOM_CHECK(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(), "{}: no \"weight_map\" object", where);

  std::map<std::string, std::vector<std::string>> listed;  // shard file -> tensors the index puts there
  for (const auto& [name, file] : index["weight_map"].items()) {
    LOOM_CHECK(file.is_string(), "{}: tensor {}: shard {} is not a string", where, name, brief(file));
    const std::string f = file.get<std::string>();
    // A bare file name: the index must not reach outside the model directory.
    LOOM_CHECK(!f.empty() && f != "." && f != ".." && f.find('/') == std::string::npos,
               "{}: tensor {}: shard '{}' is not a file name in {}", where, name, f, dir.string());
    listed[f].push_back(name);
  }
  TensorMap out;
  for (const auto& [file, names] : listed) {
    TensorMap shard = read_safetensors(dir / file);
    for (const std::string& name : names) {
      auto it = shard.find(name);
      LOOM_CHECK(it != shard.end(), "{}: tensor {} is listed in shard {}, which does not hold it", where, name, file);
      out.emplace(name, std::move(it->second));
      shard.erase(it);
    }
    LOOM_CHECK(shard.empty(), "{}: shard {} holds tensor {}, which the index does not list there", where, file, shard.begin()->first);
  }
  return out;
}

}  // namespace loom::io
