// safetensors: round trips for every dtype, byte-exact files against the format's rules,
// every kind of corrupted header rejected with a message naming file and tensor, atomic
// writes, and the sharded directory layout.
#include <gtest/gtest.h>

#include "io_testing.h"
#include "loom/io/safetensors.h"
#include "loom/ops/shape.h"

using namespace loom;
using namespace loom::io;
using namespace loom::io_testing;

namespace {

// A safetensors file from a header and a data buffer (header used as given, no padding).
std::string st_file(const std::string& header, const std::string& data = "") { return le<uint64_t>(header.size()) + header + data; }

std::string entry(const std::string& name, const std::string& dtype, const std::string& shape, uint64_t begin, uint64_t end) {
  return fmt::format(R"("{}":{{"dtype":"{}","shape":{},"data_offsets":[{},{}]}})", name, dtype, shape, begin, end);
}

}  // namespace

TEST(Safetensors, RoundTripsEveryDtypeAndMetadata) {
  TempDir dir;
  TensorMap tensors;
  const std::vector<DType> dtypes = {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64, DType::u8};
  for (DType d : dtypes) tensors[std::string("t_") + dtype_name(d)] = Tensor::from_vector({1, 2, 3, 4, 5, 250}, {2, 3}, d);
  tensors["scalar"] = Tensor::full({}, -1.25);
  tensors["empty"] = Tensor::zeros({0, 4}, DType::i64);
  tensors["transposed"] = ops::transpose(Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}), 0, 1);  // written contiguous
  const Metadata meta = {{"format", "pt"}, {"note", "ünïcode"}};
  write_safetensors(dir / "a.safetensors", tensors, meta);

  Metadata got_meta;
  TensorMap got = read_safetensors(dir / "a.safetensors", &got_meta);
  EXPECT_EQ(got_meta, meta);
  ASSERT_EQ(got.size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(got.count(name));
    EXPECT_EQ(got[name].dtype(), t.dtype());
    EXPECT_EQ(got[name].shape(), t.shape());
    EXPECT_EQ(bytes_of(got[name]), bytes_of(ops::contiguous(t)));
  }
  EXPECT_FALSE(fs::exists(dir / ("a.safetensors.tmp." + std::to_string(::getpid()))));
}

// The layout the safetensors crate writes for one F32 tensor: 8-byte size 64, compact JSON
// (dtype, shape, data_offsets), then the little-endian floats.
TEST(Safetensors, WritesTheReferenceBytes) {
  TempDir dir;
  write_safetensors(dir / "x", {{"attn.0", Tensor::from_vector({0, 1, 2, 3, 4, 5}, {1, 2, 3})}});
  const std::string header = R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})";
  ASSERT_EQ(header.size(), 64u);
  EXPECT_EQ(read_bytes(dir / "x"), le<uint64_t>(64) + header + le_all<float>({0, 1, 2, 3, 4, 5}));

  // No tensors, only metadata: header padded with spaces to a multiple of 8.
  write_safetensors(dir / "y", {}, {{"framework", "pt"}});
  EXPECT_EQ(read_bytes(dir / "y"), le<uint64_t>(40) + R"({"__metadata__":{"framework":"pt"}})" + std::string(5, ' '));
}

// Mixed dtypes: metadata first, then descending alignment (I64, F32, BF16, U8), names sorted
// within one dtype, data packed in that order.
TEST(Safetensors, OrdersByAlignmentThenName) {
  TempDir dir;
  TensorMap t = {{"b", Tensor::from_ints({1, 2, 3}, {3}, DType::u8)},
                 {"a", Tensor::full({}, 1.5)},
                 {"c", Tensor::from_ints({-7}, {1}, DType::i64)},
                 {"e", Tensor::from_ints({9}, {1}, DType::i64)},
                 {"d", Tensor::from_vector({1.0, -2.0}, {2}, DType::bf16)}};
  write_safetensors(dir / "m", t, {{"k", "v"}});
  std::string header =
      "{"
      R"("__metadata__":{"k":"v"},)" +
      entry("c", "I64", "[1]", 0, 8) + "," + entry("e", "I64", "[1]", 8, 16) + "," + entry("a", "F32", "[]", 16, 20) + "," +
      entry("d", "BF16", "[2]", 20, 24) + "," + entry("b", "U8", "[3]", 24, 27) + "}";
  header.append((8 - header.size() % 8) % 8, ' ');
  const std::string data = le<int64_t>(-7) + le<int64_t>(9) + le<float>(1.5f) + le_all<uint16_t>({0x3f80, 0xc000}) + "\x01\x02\x03";
  EXPECT_EQ(read_bytes(dir / "m"), st_file(header, data));
}

TEST(Safetensors, ReadsHandcraftedFileIncludingUnalignedTensors) {
  TempDir dir;
  // "u" occupies 3 bytes, so "f" starts at an odd address and must be copied out; so would "e",
  // which has no bytes (and a copy to no memory was undefined behaviour).
  const std::string header =
      "{" + entry("u", "U8", "[3]", 0, 3) + "," + entry("f", "F32", "[2]", 3, 11) + "," + entry("e", "F64", "[0,6]", 3, 3) + "}";
  write_bytes(dir / "h", st_file(header, "\x07\x08\x09" + le_all<float>({2.5f, -4.0f})));
  TensorMap got = read_safetensors(dir / "h");
  EXPECT_EQ(got.at("u").to_ints(), (std::vector<int64_t>{7, 8, 9}));
  EXPECT_EQ(got.at("f").to_vector(), (std::vector<double>{2.5, -4.0}));
  EXPECT_EQ(got.at("e").shape(), (Shape{0, 6}));
}

TEST(Safetensors, WritingAReadTensorLeavesTheFileAlone) {
  TempDir dir;
  write_safetensors(dir / "w", {{"x", Tensor::from_vector({1, 2}, {2})}});
  const std::string before = read_bytes(dir / "w");
  {
    TensorMap got = read_safetensors(dir / "w");
    got.at("x").data<float>()[0] = 42.0f;  // private mapping: copy-on-write
    EXPECT_EQ(got.at("x").to_vector()[0], 42.0);
  }
  EXPECT_EQ(read_bytes(dir / "w"), before);
}

struct Corrupt {
  const char* what;
  std::string bytes;
  std::vector<std::string> fragments;
};

TEST(Safetensors, RejectsCorruptedFiles) {
  TempDir dir;
  const std::string f32x2 = le_all<float>({1, 2});
  const std::vector<Corrupt> cases = {
      {"shorter than the size field", "abc", {"3 bytes, shorter than the 8-byte header size"}},
      {"N larger than the file", le<uint64_t>(1000) + "{}", {"header size 1000 exceeds the 2 bytes"}},
      {"N absurd", le<uint64_t>(~0ull) + "{}", {"header size 18446744073709551615 exceeds"}},
      {"header not JSON", st_file("{not json"), {"header: invalid JSON", "parse error"}},
      {"header not an object", st_file("[1, 2]"), {"header [1,2] is not a JSON object"}},
      {"entry not an object", st_file(R"({"x": 5})"), {"tensor x: entry 5 is not an object"}},
      {"missing field", st_file(R"({"x":{"dtype":"F32","shape":[2]}})"), {"tensor x: no \"data_offsets\" field"}},
      {"unknown dtype", st_file("{" + entry("x", "F8_E4M3", "[2]", 0, 2) + "}", "ab"), {"tensor x: dtype \"F8_E4M3\" is not supported"}},
      {"dtype not a string",
       st_file(R"({"x":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", f32x2),
       {"tensor x: dtype 4 is not a string"}},
      {"negative dim", st_file("{" + entry("x", "F32", "[-2]", 0, 8) + "}", f32x2), {"tensor x: shape [-2] holds -2"}},
      {"fractional dim", st_file("{" + entry("x", "F32", "[2.5]", 0, 8) + "}", f32x2), {"holds 2.5, not a non-negative integer"}},
      {"too many dims", st_file("{" + entry("x", "F32", "[1,1,1,1,1,1,1,1,2]", 0, 8) + "}", f32x2), {"not a list of at most 8 sizes"}},
      {"element count overflow",
       st_file("{" + entry("x", "F32", "[4294967296,4294967296]", 0, 8) + "}", f32x2),
       {"tensor x: shape [4294967296,4294967296] overflows a 64-bit element count"}},
      {"strides overflow behind a zero size",
       st_file("{" + entry("x", "F32", "[0,4294967296,4294967296]", 0, 0) + "}"),
       {"shape [0,4294967296,4294967296] overflows"}},
      {"nested too deep", st_file(std::string(100000, '[') + std::string(100000, ']')), {"header: JSON nested deeper than 64 levels"}},
      {"byte count overflow",
       st_file("{" + entry("x", "F64", "[4611686018427387904]", 0, 8) + "}", f32x2),
       {"tensor x: F64 shape [4611686018427387904] overflows a 64-bit byte count"}},
      {"offsets not integers",
       st_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,"8"]}})", f32x2),
       {"tensor x: data_offsets [0,\"8\"] is not a pair of non-negative integers"}},
      {"three offsets", st_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}})", f32x2), {"is not a pair"}},
      {"offsets past the buffer",
       st_file("{" + entry("x", "F32", "[4]", 0, 16) + "}", f32x2),
       {"tensor x: data_offsets [0, 16] lie outside the data buffer of 8 bytes"}},
      {"offsets reversed", st_file("{" + entry("x", "F32", "[0]", 8, 0) + "}", f32x2), {"data_offsets [8, 0] lie outside"}},
      {"offsets do not match the size",
       st_file("{" + entry("x", "F32", "[3]", 0, 8) + "}", f32x2),
       {"tensor x: data_offsets [0, 8] do not match F32 [3] (12 bytes)"}},
      {"overlap",
       st_file("{" + entry("x", "F32", "[2]", 0, 8) + "," + entry("y", "F32", "[1]", 4, 8) + "}", f32x2),
       {"tensor y: data_offsets [4, 8] overlap tensor x at [0, 8]"}},
      {"duplicate names",
       st_file("{" + entry("x", "F32", "[1]", 0, 4) + "," + entry("x", "F32", "[1]", 4, 8) + "}", f32x2),
       {"key 'x' appears twice"}},
      {"metadata not strings", st_file(R"({"__metadata__":{"epoch":3}})"), {"__metadata__ value of 'epoch' is 3, not a string"}},
      {"invalid UTF-8", st_file("{\"\xff\":1}"), {"invalid JSON"}},
  };
  for (const Corrupt& c : cases) {
    SCOPED_TRACE(c.what);
    const fs::path p = dir / "bad.safetensors";
    write_bytes(p, c.bytes);
    std::vector<std::string> frags = c.fragments;
    frags.push_back("safetensors: " + p.string());
    expect_error([&] { read_safetensors(p); }, frags);
  }
}

TEST(Safetensors, RejectsATruncatedFile) {
  TempDir dir;
  write_safetensors(dir / "t", {{"w", Tensor::zeros({4, 4})}});
  std::string bytes = read_bytes(dir / "t");
  write_bytes(dir / "t", bytes.substr(0, bytes.size() - 5));
  expect_error([&] { read_safetensors(dir / "t"); },
               {"tensor w: data_offsets [0, 64] lie outside the data buffer of 59 bytes (truncated file?)"});
  expect_error([&] { read_safetensors(dir / "missing"); }, {"cannot open", "missing"});
}

TEST(Safetensors, FailedWriteKeepsTheOldFile) {
  TempDir dir;
  write_safetensors(dir / "good", {{"w", Tensor::ones({3})}});
  const std::string before = read_bytes(dir / "good");
  expect_error([&] { write_safetensors(dir / "good", {{"__metadata__", Tensor::ones({1})}}); }, {"'__metadata__' is reserved"});
  expect_error([&] { write_safetensors(dir / "good", {{"u", Tensor()}}); }, {"tensor u is undefined"});
  expect_error([&] { write_safetensors(dir / "no" / "such" / "dir", {{"w", Tensor::ones({3})}}); }, {"cannot create"});
  EXPECT_EQ(read_bytes(dir / "good"), before);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1);  // no temporaries left
}

TEST(Safetensors, ReadsShardedDirectories) {
  TempDir dir;
  write_safetensors(dir / "model-00001-of-00002.safetensors", {{"a", Tensor::ones({2})}, {"b", Tensor::zeros({3}, DType::i32)}});
  write_safetensors(dir / "model-00002-of-00002.safetensors", {{"c", Tensor::full({1}, 7.0)}});
  auto index = [&](const std::string& weight_map) {
    write_bytes(dir / "model.safetensors.index.json", R"({"metadata": {"total_size": 24}, "weight_map": )" + weight_map + "}");
  };
  index(R"({"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"})");
  TensorMap got = read_safetensors_dir(dir.path());
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got.at("a").to_vector(), (std::vector<double>{1, 1}));
  EXPECT_EQ(got.at("b").dtype(), DType::i32);
  EXPECT_EQ(got.at("c").item(), 7.0);

  const std::string where = (dir / "model.safetensors.index.json").string();
  index(R"({"a": "model-00001-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"})");
  expect_error([&] { read_safetensors_dir(dir.path()); },
               {where, "shard model-00001-of-00002.safetensors holds tensor b, which the index does not list"});
  index(R"({"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors", "c": "model-00001-of-00002.safetensors"})");
  expect_error([&] { read_safetensors_dir(dir.path()); },
               {"tensor c is listed in shard model-00001-of-00002.safetensors, which does not hold it"});
  index(R"({"a": "../model-00001-of-00002.safetensors"})");
  expect_error([&] { read_safetensors_dir(dir.path()); }, {"tensor a: shard '../model-00001-of-00002.safetensors' is not a file name"});
  index(R"({"a": "model-00001-of-00002.safetensors", "a": "model-00001-of-00002.safetensors"})");
  expect_error([&] { read_safetensors_dir(dir.path()); }, {where, "key 'a' appears twice"});
  index(R"({"a": "model-00003-of-00002.safetensors"})");
  expect_error([&] { read_safetensors_dir(dir.path()); }, {"model-00003-of-00002.safetensors", "cannot open"});
  write_bytes(dir / "model.safetensors.index.json", R"({"weights": {}})");
  expect_error([&] { read_safetensors_dir(dir.path()); }, {where, "no \"weight_map\" object"});

  TempDir empty;
  expect_error([&] { read_safetensors_dir(empty.path()); }, {"holds neither model.safetensors.index.json nor model.safetensors"});
  write_safetensors(empty / "model.safetensors", {{"z", Tensor::ones({1})}});
  EXPECT_EQ(read_safetensors_dir(empty.path()).count("z"), 1u);
}
