// GGUF, llama.cpp's model file (version 3, little-endian): "GGUF", the version, the tensor and
// key-value counts, typed metadata (scalars, strings, arrays of one type), tensor infos (name,
// dims fastest-first, ggml type, offset) and the tensor data, each tensor aligned to
// `general.alignment` (32 when absent). The writer writes what gguf-py's GGUFWriter writes; the
// reader never trusts the file: every count, length, type, dim and offset is checked against the
// file's size before anything is read.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "loom/core/storage.h"
#include "loom/core/tensor.h"

namespace loom::io::gguf {

enum class ValueType : uint32_t { u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7, string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12 };

// The ggml tensor types Loom writes and reads (ggml's ids).
enum class TensorType : uint32_t { f32 = 0, f16 = 1, q8_0 = 8, bf16 = 30 };
const char* type_name(TensorType t);                      // "f32", "f16", "q8_0", "bf16"
TensorType type_from_name(std::string_view name);         // throws listing the names
int64_t block_size(TensorType t);                         // elements per block: 32 for q8_0, else 1
uint64_t row_bytes(TensorType t, int64_t elements);       // bytes of that many elements (a multiple of the block)

// A metadata value: one element (a scalar) or an array, all of `type`. Integers and bools are
// held as int64 (a u64 as its bit pattern), f32/f64 as double, strings as bytes.
struct Value {
  ValueType type = ValueType::u32;
  bool array = false;
  std::vector<int64_t> ints = {};
  std::vector<double> floats = {};
  std::vector<std::string> strings = {};

  size_t size() const;
  // A scalar's value; nullopt (null) when this is not a scalar of that kind.
  std::optional<int64_t> as_integer() const;  // any integer type or bool
  std::optional<double> as_number() const;    // f32 or f64
  const std::string* as_string() const;
};
Value u32(uint32_t v);
Value f32(double v);
Value boolean(bool v);
Value str(std::string v);
Value strings(std::vector<std::string> v);
Value i32s(const std::vector<int32_t>& v);
Value f32s(const std::vector<float>& v);

// Key-value pairs in file order.
using Metadata = std::vector<std::pair<std::string, Value>>;
const Value* find(const Metadata& m, std::string_view key);

// A tensor to write: its C-order shape (the file lists the dims reversed, fastest first) and a
// function giving its values (any float dtype and layout), called once while the file is written
// and converted to `type` then (q8_0 needs a multiple of 32 elements per row).
struct OutTensor {
  std::string name;
  TensorType type = TensorType::f32;
  Shape shape = {};
  std::function<Tensor()> data = {};
};

// Writes a GGUF v3 file atomically (a temporary, then renamed): the metadata, the tensor infos
// and the data, each tensor padded to 32 bytes. Names must be unique and under 64 bytes.
void write_file(const std::filesystem::path& path, const Metadata& metadata, const std::vector<OutTensor>& tensors);

// Values -> ggml's bytes of `type`: f32/f16/bf16 rounded to nearest even; q8_0 as ggml's
// quantize_row_q8_0_ref: per block of 32, d = max|x| / 127 stored as f16 and q = roundf(x / d).
std::vector<uint8_t> encode(const Tensor& values, TensorType type);
// The inverse: f32 values of `shape` from bytes of `type` (q8_0: q · d).
Tensor decode(std::span<const uint8_t> bytes, TensorType type, const Shape& shape);

struct TensorInfo {
  std::string name;
  TensorType type = TensorType::f32;
  Shape shape = {};     // C order
  uint64_t offset = 0;  // from the start of the file
  uint64_t nbytes = 0;
};

// A GGUF file (version 2 or 3) mapped copy-on-write; its tensors are read on request.
class File {
 public:
  // Throws loom::Error naming the file and what is wrong: a bad magic or version, a count,
  // string or array reaching past the end, an unknown or nested value type, a repeated key or
  // tensor name, a general.alignment that is not a power of two, a tensor of a type Loom does not
  // read, with more than 4 dims, a zero or overflowing dim, a row that is not whole blocks, or
  // data that is misaligned, overlapping or outside the file.
  explicit File(const std::filesystem::path& path);

  uint32_t version() const { return version_; }
  const Metadata& metadata() const { return metadata_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo& tensor(std::string_view name) const;  // throws when absent
  std::span<const uint8_t> bytes(const TensorInfo& t) const;
  Tensor values(const TensorInfo& t) const { return decode(bytes(t), t.type, t.shape); }

 private:
  std::string where_;
  std::shared_ptr<Storage> file_;
  uint32_t version_ = 0;
  Metadata metadata_;
  std::vector<TensorInfo> tensors_;
};

}  // namespace loom::io::gguf
