// GGUF writer (gguf-py's layout, atomic) and reader (every field checked against the file).
#include "loom/io/gguf.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include "loom/autograd/function.h"
#include "loom/io/file_util.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/shape.h"

namespace loom::io::gguf {

static_assert(std::endian::native == std::endian::little, "GGUF I/O assumes a little-endian host");

namespace fs = std::filesystem;

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" as a little-endian u32
constexpr uint32_t kVersion = 3;
constexpr uint64_t kAlignment = 32;       // GGUF_DEFAULT_ALIGNMENT
constexpr size_t kMaxName = 64;           // GGML_MAX_NAME, the terminating NUL included
constexpr size_t kMaxDims = 4;            // GGML_MAX_DIMS
constexpr uint64_t kHeaderBytes = 24;     // magic, version, tensor count, key-value count

struct TypeInfo {
  TensorType type;
  const char* name;
  int64_t block;         // elements per block
  uint64_t block_bytes;  // bytes per block
};
constexpr TypeInfo kTypes[] = {
    {TensorType::f32, "f32", 1, 4}, {TensorType::f16, "f16", 1, 2}, {TensorType::q8_0, "q8_0", 32, 34}, {TensorType::bf16, "bf16", 1, 2}};

const TypeInfo* find_type(uint32_t id) {
  for (const TypeInfo& t : kTypes)
    if (uint32_t(t.type) == id) return &t;
  return nullptr;
}
const TypeInfo& info(TensorType t) {
  const TypeInfo* i = find_type(uint32_t(t));
  LOOM_CHECK(i, "gguf: tensor type {} is not one Loom writes", uint32_t(t));
  return *i;
}

bool is_float(ValueType t) { return t == ValueType::f32 || t == ValueType::f64; }
// Bytes an element takes in the file at least (a string: its length field).
uint64_t element_bytes(ValueType t) {
  switch (t) {
    case ValueType::u8: case ValueType::i8: case ValueType::boolean: return 1;
    case ValueType::u16: case ValueType::i16: return 2;
    case ValueType::u32: case ValueType::i32: case ValueType::f32: return 4;
    default: return 8;
  }
}

uint64_t align_up(uint64_t n, uint64_t alignment) { return (n + alignment - 1) / alignment * alignment; }

template <typename T> void put(std::string& out, T v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); }
void put_string(std::string& out, std::string_view s) {
  put<uint64_t>(out, s.size());
  out.append(s);
}

void put_element(std::string& out, const Value& v, size_t i) {
  switch (v.type) {
    case ValueType::u8: case ValueType::boolean: return put<uint8_t>(out, uint8_t(v.ints[i]));
    case ValueType::i8: return put<int8_t>(out, int8_t(v.ints[i]));
    case ValueType::u16: return put<uint16_t>(out, uint16_t(v.ints[i]));
    case ValueType::i16: return put<int16_t>(out, int16_t(v.ints[i]));
    case ValueType::u32: return put<uint32_t>(out, uint32_t(v.ints[i]));
    case ValueType::i32: return put<int32_t>(out, int32_t(v.ints[i]));
    case ValueType::u64: case ValueType::i64: return put<int64_t>(out, v.ints[i]);
    case ValueType::f32: return put<float>(out, float(v.floats[i]));
    case ValueType::f64: return put<double>(out, v.floats[i]);
    case ValueType::string: return put_string(out, v.strings[i]);
    case ValueType::array: break;
  }
  throw Error("gguf: an array cannot hold arrays");
}

void put_value(std::string& out, const std::string& key, const Value& v) {
  LOOM_CHECK(v.type != ValueType::array && (v.array || v.size() == 1), "gguf: metadata {} is not a scalar or an array of one type", key);
  put<uint32_t>(out, uint32_t(v.array ? ValueType::array : v.type));
  if (v.array) {
    put<uint32_t>(out, uint32_t(v.type));
    put<uint64_t>(out, v.size());
  }
  for (size_t i = 0; i < v.size(); ++i) put_element(out, v, i);
}

// The alignment a file's metadata asks for: general.alignment, a power of two, else 32.
uint64_t alignment_of(const Metadata& m, const std::string& where) {
  const Value* a = find(m, "general.alignment");
  if (!a) return kAlignment;
  LOOM_CHECK(a->type == ValueType::u32 && !a->array, "{}: general.alignment is not a u32", where);
  const uint64_t n = uint64_t(a->ints[0]);
  LOOM_CHECK(n > 0 && std::has_single_bit(n), "{}: general.alignment {} is not a power of two", where, n);
  return n;
}

// Reads the file front to back; every read is checked against the bytes left.
struct Cursor {
  const uint8_t* data;
  uint64_t size, pos;
  const std::string& where;

  void need(uint64_t n, std::string_view what) const {
    LOOM_CHECK(n <= size - pos, "{}: {} at byte {} needs {} bytes, the file has {} left (truncated?)", where, what, pos, n, size - pos);
  }
  template <typename T> T get(std::string_view what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data + pos, sizeof v);
    pos += sizeof v;
    return v;
  }
  std::string string(std::string_view what) {
    const uint64_t n = get<uint64_t>(what);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(data + pos), n);
    pos += n;
    return s;
  }
};

void read_element(Cursor& c, Value& v, const std::string& what) {
  switch (v.type) {
    case ValueType::u8: return v.ints.push_back(c.get<uint8_t>(what));
    case ValueType::boolean: return v.ints.push_back(c.get<uint8_t>(what) != 0);
    case ValueType::i8: return v.ints.push_back(c.get<int8_t>(what));
    case ValueType::u16: return v.ints.push_back(c.get<uint16_t>(what));
    case ValueType::i16: return v.ints.push_back(c.get<int16_t>(what));
    case ValueType::u32: return v.ints.push_back(c.get<uint32_t>(what));
    case ValueType::i32: return v.ints.push_back(c.get<int32_t>(what));
    case ValueType::u64: case ValueType::i64: return v.ints.push_back(c.get<int64_t>(what));
    case ValueType::f32: return v.floats.push_back(c.get<float>(what));
    case ValueType::f64: return v.floats.push_back(c.get<double>(what));
    case ValueType::string: return v.strings.push_back(c.string(what));
    case ValueType::array: break;
  }
  throw Error(fmt::format("{}: {}: nested arrays are not supported", c.where, what));
}

Value read_value(Cursor& c, const std::string& key) {
  const std::string what = "the value of " + key;
  Value v;
  uint32_t type = c.get<uint32_t>(what);
  LOOM_CHECK(type <= uint32_t(ValueType::f64), "{}: {} has type {}, not a GGUF value type", c.where, what, type);
  uint64_t n = 1;
  if (ValueType(type) == ValueType::array) {
    v.array = true;
    type = c.get<uint32_t>(what);
    LOOM_CHECK(type <= uint32_t(ValueType::f64), "{}: {} is an array of type {}, not a GGUF value type", c.where, what, type);
    LOOM_CHECK(ValueType(type) != ValueType::array, "{}: {} is an array of arrays, which Loom does not read", c.where, what);
    n = c.get<uint64_t>(what);
    // Each element takes at least element_bytes: a count the file cannot hold fails before any allocation.
    LOOM_CHECK(n <= (c.size - c.pos) / element_bytes(ValueType(type)), "{}: {} claims {} elements, more than the file holds", c.where,
               what, n);
  }
  v.type = ValueType(type);
  for (uint64_t i = 0; i < n; ++i) read_element(c, v, what);
  return v;
}

TensorInfo read_tensor_info(Cursor& c) {
  TensorInfo t;
  t.name = c.string("a tensor name");
  const std::string at = fmt::format("{}: tensor '{}'", c.where, t.name.substr(0, 80));
  LOOM_CHECK(t.name.size() < kMaxName, "{}: the name is {} bytes, the limit is {}", at, t.name.size(), kMaxName - 1);
  const uint32_t n_dims = c.get<uint32_t>(at + " dims");
  LOOM_CHECK(n_dims >= 1 && n_dims <= kMaxDims, "{}: {} dims, not 1 to {}", at, n_dims, kMaxDims);
  uint64_t numel = 1;
  for (uint32_t i = 0; i < n_dims; ++i) {
    const uint64_t d = c.get<uint64_t>(at + " dims");
    LOOM_CHECK(d >= 1 && !__builtin_mul_overflow(numel, d, &numel) && numel <= uint64_t(std::numeric_limits<int64_t>::max()),
               "{}: dim {} is {}: zero, or the element count overflows", at, i, d);
    t.shape.insert(t.shape.begin(), int64_t(d));  // the file lists dims fastest first
  }
  const uint32_t type = c.get<uint32_t>(at + " type");
  const TypeInfo* ti = find_type(type);
  LOOM_CHECK(ti, "{}: ggml type {} is not one Loom reads (f32 0, f16 1, q8_0 8, bf16 30)", at, type);
  t.type = ti->type;
  LOOM_CHECK(t.shape.back() % ti->block == 0, "{}: rows of {} elements are not whole {} blocks of {}", at, t.shape.back(), ti->name,
             ti->block);
  LOOM_CHECK(!__builtin_mul_overflow(numel / uint64_t(ti->block), ti->block_bytes, &t.nbytes), "{}: the byte count overflows", at);
  t.offset = c.get<uint64_t>(at + " offset");
  return t;
}

}  // namespace

const char* type_name(TensorType t) { return info(t).name; }

TensorType type_from_name(std::string_view name) {
  for (const TypeInfo& t : kTypes)
    if (name == t.name) return t.type;
  throw Error(fmt::format("gguf: tensor type '{}' is not one of f32, f16, bf16, q8_0", name));
}

int64_t block_size(TensorType t) { return info(t).block; }

uint64_t row_bytes(TensorType t, int64_t elements) {
  const TypeInfo& i = info(t);
  LOOM_CHECK(elements % i.block == 0, "gguf: {} elements are not whole {} blocks of {}", elements, i.name, i.block);
  return uint64_t(elements / i.block) * i.block_bytes;
}

size_t Value::size() const {
  if (type == ValueType::string) return strings.size();
  return is_float(type) ? floats.size() : ints.size();
}

std::optional<int64_t> Value::as_integer() const {
  if (array || type == ValueType::string || is_float(type)) return std::nullopt;
  return ints.at(0);
}

std::optional<double> Value::as_number() const {
  if (array || !is_float(type)) return std::nullopt;
  return floats.at(0);
}

const std::string* Value::as_string() const { return !array && type == ValueType::string ? &strings.at(0) : nullptr; }

Value u32(uint32_t v) { return Value{ValueType::u32, false, {int64_t(v)}}; }
Value f32(double v) { return Value{ValueType::f32, false, {}, {v}}; }
Value boolean(bool v) { return Value{ValueType::boolean, false, {int64_t(v)}}; }
Value str(std::string v) { return Value{ValueType::string, false, {}, {}, {std::move(v)}}; }
Value strings(std::vector<std::string> v) { return Value{ValueType::string, true, {}, {}, std::move(v)}; }
Value i32s(const std::vector<int32_t>& v) { return Value{ValueType::i32, true, std::vector<int64_t>(v.begin(), v.end())}; }
Value f32s(const std::vector<float>& v) { return Value{ValueType::f32, true, {}, std::vector<double>(v.begin(), v.end())}; }

const Value* find(const Metadata& m, std::string_view key) {
  for (const auto& [k, v] : m)
    if (k == key) return &v;
  return nullptr;
}

std::vector<uint8_t> encode(const Tensor& values, TensorType type) {
  autograd::NoGradGuard no_grad;
  const Tensor x = ops::contiguous(values.dtype() == DType::f32 ? values : ops::cast(values, DType::f32));
  const float* p = x.data<float>();
  const int64_t n = x.numel();
  std::vector<uint8_t> out(row_bytes(type, n));
  uint8_t* o = out.data();
  auto store = [](uint8_t* at, uint16_t bits) { std::memcpy(at, &bits, 2); };
  switch (type) {
    case TensorType::f32:
      std::memcpy(o, p, out.size());
      break;
    case TensorType::f16:
      for (int64_t i = 0; i < n; ++i) store(o + 2 * i, f32_to_f16(p[i]).bits);
      break;
    case TensorType::bf16:
      for (int64_t i = 0; i < n; ++i) store(o + 2 * i, f32_to_bf16(p[i]).bits);
      break;
    case TensorType::q8_0:
      for (int64_t b = 0; b < n / 32; ++b, o += 34) {
        const float* xb = p + 32 * b;
        float amax = 0;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
        const float d = amax / 127, id = d != 0 ? 1.0f / d : 0.0f;
        store(o, f32_to_f16(d).bits);
        for (int j = 0; j < 32; ++j) {
          const float q = std::roundf(xb[j] * id);  // within ±127 for finite values; NaN and ±inf (ggml: undefined) become 0
          o[2 + j] = uint8_t(int8_t(q >= -127 && q <= 127 ? q : 0));
        }
      }
      break;
  }
  return out;
}

Tensor decode(std::span<const uint8_t> bytes, TensorType type, const Shape& shape) {
  Tensor out = Tensor::empty(shape);
  const int64_t n = out.numel();
  LOOM_CHECK(bytes.size() == row_bytes(type, n), "gguf: {} bytes are not {} {} values", bytes.size(), n, type_name(type));
  float* o = out.data<float>();
  const uint8_t* p = bytes.data();
  auto half = [&](int64_t i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    return h;
  };
  switch (type) {
    case TensorType::f32:
      std::memcpy(o, p, bytes.size());
      break;
    case TensorType::f16:
      for (int64_t i = 0; i < n; ++i) o[i] = f16_to_f32(f16{half(i)});
      break;
    case TensorType::bf16:
      for (int64_t i = 0; i < n; ++i) o[i] = bf16_to_f32(bf16{half(i)});
      break;
    case TensorType::q8_0:
      for (int64_t b = 0; b < n / 32; ++b, p += 34) {
        const float d = f16_to_f32(f16{half(0)});
        for (int j = 0; j < 32; ++j) o[32 * b + j] = float(int8_t(p[2 + j])) * d;
      }
      break;
  }
  return out;
}

void write_file(const fs::path& path, const Metadata& metadata, const std::vector<OutTensor>& tensors) {
  const std::string where = "gguf: " + path.string();
  const uint64_t alignment = alignment_of(metadata, where);
  std::string head;
  put<uint32_t>(head, kMagic);
  put<uint32_t>(head, kVersion);
  put<uint64_t>(head, tensors.size());
  put<uint64_t>(head, metadata.size());
  std::set<std::string_view> keys, names;
  for (const auto& [key, value] : metadata) {
    LOOM_CHECK(keys.insert(key).second, "{}: metadata key {} appears twice", where, key);
    put_string(head, key);
    put_value(head, key, value);
  }
  uint64_t offset = 0;
  for (const OutTensor& t : tensors) {
    LOOM_CHECK(names.insert(t.name).second && t.name.size() < kMaxName, "{}: tensor name '{}' is repeated or {} bytes or longer", where,
               t.name, kMaxName);
    LOOM_CHECK(!t.shape.empty() && t.shape.size() <= kMaxDims, "{}: tensor {} has {} dims, not 1 to {}", where, t.name, t.shape.size(),
               kMaxDims);
    put_string(head, t.name);
    put<uint32_t>(head, uint32_t(t.shape.size()));
    for (auto d = t.shape.rbegin(); d != t.shape.rend(); ++d) put<uint64_t>(head, uint64_t(*d));
    put<uint32_t>(head, uint32_t(t.type));
    put<uint64_t>(head, offset);
    LOOM_CHECK(t.shape.back() % block_size(t.type) == 0, "{}: tensor {} has rows of {}, not whole {} blocks", where, t.name, t.shape.back(),
               type_name(t.type));
    offset += align_up(row_bytes(t.type, numel_of(t.shape)), alignment);
  }
  head.append(align_up(head.size(), alignment) - head.size(), '\0');

  AtomicFile file(path);
  file.write(head);
  for (const OutTensor& t : tensors) {
    const Tensor values = t.data();
    LOOM_CHECK(values.shape() == t.shape, "{}: tensor {} has shape {}, its info says {}", where, t.name, values.shape(), t.shape);
    const std::vector<uint8_t> bytes = encode(values, t.type);
    file.write(bytes.data(), bytes.size());
    file.write(std::string(align_up(bytes.size(), alignment) - bytes.size(), '\0'));
  }
  file.commit();
}

File::File(const fs::path& path) : where_("gguf: " + path.string()) {
  file_ = map_file(path, "gguf", kHeaderBytes, "24-byte header");
  Cursor c{static_cast<const uint8_t*>(file_->data()), file_->nbytes(), 0, where_};
  const uint32_t magic = c.get<uint32_t>("the magic");
  LOOM_CHECK(magic == kMagic, "{}: the file does not start with \"GGUF\"", where_);
  version_ = c.get<uint32_t>("the version");
  LOOM_CHECK(version_ == 2 || version_ == 3, "{}: version {} is not supported (2 or 3)", where_, version_);
  const uint64_t n_tensors = c.get<uint64_t>("the tensor count"), n_kv = c.get<uint64_t>("the key-value count");
  std::set<std::string> keys, names;
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.string("a metadata key");
    LOOM_CHECK(keys.insert(key).second, "{}: metadata key {} appears twice", where_, key.substr(0, 80));
    Value v = read_value(c, key.substr(0, 80));
    metadata_.emplace_back(std::move(key), std::move(v));
  }
  const uint64_t alignment = alignment_of(metadata_, where_);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    tensors_.push_back(read_tensor_info(c));
    LOOM_CHECK(names.insert(tensors_.back().name).second, "{}: tensor '{}' appears twice", where_, tensors_.back().name);
  }
  const uint64_t data_start = align_up(c.pos, alignment);
  LOOM_CHECK(data_start <= c.size, "{}: the tensor data would start at byte {}, past the end ({} bytes)", where_, data_start, c.size);
  const uint64_t avail = c.size - data_start;
  std::vector<const TensorInfo*> by_offset;
  for (TensorInfo& t : tensors_) {
    LOOM_CHECK(t.offset % alignment == 0, "{}: tensor '{}' starts at data offset {}, not a multiple of {}", where_, t.name, t.offset,
               alignment);
    LOOM_CHECK(t.offset <= avail && t.nbytes <= avail - t.offset, "{}: tensor '{}' ({} bytes at data offset {}) lies outside the {} data bytes",
               where_, t.name, t.nbytes, t.offset, avail);
    t.offset += data_start;
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    LOOM_CHECK(by_offset[i]->offset >= by_offset[i - 1]->offset + by_offset[i - 1]->nbytes, "{}: tensors '{}' and '{}' overlap", where_,
               by_offset[i - 1]->name, by_offset[i]->name);
}

const TensorInfo& File::tensor(std::string_view name) const {
  for (const TensorInfo& t : tensors_)
    if (t.name == name) return t;
  throw Error(fmt::format("{}: no tensor {}", where_, name));
}

std::span<const uint8_t> File::bytes(const TensorInfo& t) const {
  return {static_cast<const uint8_t*>(file_->data()) + t.offset, size_t(t.nbytes)};
}

}  // namespace loom::io::gguf
