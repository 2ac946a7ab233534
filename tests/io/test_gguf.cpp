// GGUF files checked against an independent implementation (tests/io/gguf_reference.py: struct +
// numpy from the spec and ggml's reference quantiser): Loom writes, Python reads and re-encodes
// the source values; Python writes, Loom reads. Then bad files, each one error naming the fault.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "io_testing.h"
#include "loom/core/rng.h"
#include "loom/io/gguf.h"

using namespace loom;
using namespace loom::io;
using namespace loom::io_testing;
using json = nlohmann::json;

namespace {

// n pseudo-random values around ±3, with exact zeros and one all-zero block of 32 (q8_0's d = 0).
Tensor values(const Shape& shape, uint64_t seed) {
  std::vector<double> v(size_t(numel_of(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = i % 11 == 0 || (i >= 32 && i < 64) ? 0.0 : 6.0 * uniform_at(seed, i) - 3.0;
  return Tensor::from_vector(v, shape);
}

gguf::Metadata some_metadata() {
  return {{"general.architecture", gguf::str("llama")}, {"llama.block_count", gguf::u32(4000000000u)},
          {"llama.rope.freq_base", gguf::f32(0.1)},     {"tokenizer.ggml.add_bos_token", gguf::boolean(true)},
          {"tokenizer.ggml.tokens", gguf::strings({"a", "", "\u0120b c"})}, {"tokenizer.ggml.token_type", gguf::i32s({1, -3, 6})},
          {"tokenizer.ggml.scores", gguf::f32s({0.5f, -1e30f})}};
}

}  // namespace

TEST(Gguf, PythonReadsWhatLoomWrites) {
  if (!python_available()) GTEST_SKIP() << LOOM_PYTHON << " not found";
  TempDir dir;
  const std::vector<std::tuple<std::string, gguf::TensorType, Shape>> specs = {
      {"f32", gguf::TensorType::f32, {3, 5}}, {"f16", gguf::TensorType::f16, {7}}, {"bf16", gguf::TensorType::bf16, {2, 3, 4}},
      {"q8", gguf::TensorType::q8_0, {4, 96}}, {"q8.big", gguf::TensorType::q8_0, {2, 2, 2, 64}}};
  std::vector<gguf::OutTensor> tensors;
  for (const auto& [name, type, shape] : specs) {
    const Tensor v = values(shape, tensors.size() + 1);
    write_bytes(dir / (name + ".f32"), bytes_of(v));
    tensors.push_back({name, type, shape, [v] { return v; }});
  }
  gguf::write_file(dir / "m.gguf", some_metadata(), tensors);
  std::string out;
  ASSERT_EQ(run_python("gguf_reference.py", "read '" + (dir / "m.gguf").string() + "' '" + dir.path().string() + "'", out), 0) << out;
  const json got = json::parse(out);
  EXPECT_EQ(got["version"], 3);
  EXPECT_EQ(got["metadata"], json::parse(R"([["general.architecture", "string", "llama"], ["llama.block_count", "u32", 4000000000],
      ["llama.rope.freq_base", "f32", 0.10000000149011612], ["tokenizer.ggml.add_bos_token", "bool", true],
      ["tokenizer.ggml.tokens", "array", ["string", ["a", "", "\u0120b c"]]], ["tokenizer.ggml.token_type", "array", ["i32", [1, -3, 6]]],
      ["tokenizer.ggml.scores", "array", ["f32", [0.5, -1.0000000150474662e30]]]])"));
  ASSERT_EQ(got["tensors"].size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const json& t = got["tensors"][i];
    SCOPED_TRACE(t.dump());
    EXPECT_EQ(t["name"], std::get<0>(specs[i]));
    EXPECT_EQ(t["type"], gguf::type_name(std::get<1>(specs[i])));
    EXPECT_EQ(t["shape"].get<Shape>(), std::get<2>(specs[i]));
    EXPECT_EQ(t["offset"].get<uint64_t>() % 32, 0u);
    EXPECT_TRUE(t["bytes_equal"].get<bool>());  // ggml's reference encoding, bit for bit
  }
  EXPECT_EQ(got["tensors"][0]["max_abs_error"], 0.0);
  EXPECT_LT(got["tensors"][3]["max_abs_error"].get<double>(), 3.0 / 127);  // half a q8_0 step at most (plus the f16 scale)

  // Loom's own reader gives the same values back.
  gguf::File f(dir / "m.gguf");
  EXPECT_EQ(f.tensors().size(), specs.size());
  EXPECT_EQ(bytes_of(f.values(f.tensor("f32"))), bytes_of(tensors[0].data()));
  EXPECT_EQ(gguf::find(f.metadata(), "tokenizer.ggml.tokens")->strings, (std::vector<std::string>{"a", "", "\u0120b c"}));
}

TEST(Gguf, LoomReadsWhatPythonWrites) {
  if (!python_available()) GTEST_SKIP() << LOOM_PYTHON << " not found";
  TempDir dir;
  std::string out;
  ASSERT_EQ(run_python("gguf_reference.py", "write '" + (dir / "py.gguf").string() + "' '" + (dir / "expect.json").string() + "'", out),
            0)
      << out;
  const json expect = json::parse(read_bytes(dir / "expect.json"));
  gguf::File f(dir / "py.gguf");
  EXPECT_EQ(f.version(), 3u);
  ASSERT_EQ(f.metadata().size(), expect["metadata"].size());
  for (size_t i = 0; i < f.metadata().size(); ++i) {
    const auto& [key, v] = f.metadata()[i];
    const json& e = expect["metadata"][i];
    SCOPED_TRACE(key);
    EXPECT_EQ(key, e[0]);
    const bool array = e[1] == "array";
    EXPECT_EQ(v.array, array);
    const json items = array ? e[2][1] : json::array({e[2]});
    ASSERT_EQ(v.size(), items.size());
    for (size_t k = 0; k < items.size(); ++k) {
      if (items[k].is_string()) EXPECT_EQ(v.strings[k], items[k]);
      else if (items[k].is_number_float()) EXPECT_EQ(v.floats[k], items[k].get<double>());
      else if (items[k].is_boolean()) EXPECT_EQ(v.ints[k], items[k].get<bool>());
      else if (items[k].is_number_unsigned()) EXPECT_EQ(uint64_t(v.ints[k]), items[k].get<uint64_t>());
      else EXPECT_EQ(v.ints[k], items[k].get<int64_t>());
    }
  }
  ASSERT_EQ(f.tensors().size(), expect["tensors"].size());
  for (const json& e : expect["tensors"]) {
    SCOPED_TRACE(e["name"].get<std::string>());
    const gguf::TensorInfo& t = f.tensor(e["name"].get<std::string>());
    EXPECT_EQ(gguf::type_name(t.type), e["type"]);
    EXPECT_EQ(t.shape, e["shape"].get<Shape>());
    EXPECT_EQ(t.offset % 64, 0u);  // general.alignment 64
    const std::vector<double> v = f.values(t).to_vector();
    EXPECT_EQ(v, e["values"].get<std::vector<double>>());
  }
}

TEST(Gguf, WriteIsAtomic) {
  TempDir dir;
  const fs::path p = dir / "m.gguf";
  write_bytes(p, "old");
  const std::vector<gguf::OutTensor> bad = {{"w", gguf::TensorType::f32, {2}, [] { return Tensor::zeros({3}); }}};
  expect_error([&] { gguf::write_file(p, {}, bad); }, {"tensor w has shape [3], its info says [2]"});
  EXPECT_EQ(read_bytes(p), "old");
  expect_error([&] { gguf::write_file(p, {}, {{"w", gguf::TensorType::q8_0, {2, 16}, [] { return Tensor::zeros({2, 16}); }}}); },
               {"rows of 16, not whole q8_0 blocks"});
  expect_error([&] { gguf::write_file(p, {{"k", gguf::u32(1)}, {"k", gguf::u32(2)}}, {}); }, {"metadata key k appears twice"});
  EXPECT_EQ(read_bytes(p), "old");
  EXPECT_FALSE(fs::exists(dir / ("m.gguf.tmp." + std::to_string(::getpid()))));
}

// Hand-made files: the header fields, then one key-value pair and one tensor info as given.
TEST(Gguf, BadFilesAreOneErrorNamingTheFault) {
  TempDir dir;
  auto str = [](const std::string& s) { return le<uint64_t>(s.size()) + s; };
  auto file = [&](uint32_t version, uint64_t n_tensors, uint64_t n_kv, const std::string& rest) {
    return std::string("GGUF") + le<uint32_t>(version) + le<uint64_t>(n_tensors) + le<uint64_t>(n_kv) + rest;
  };
  const std::string kv = str("general.architecture") + le<uint32_t>(8) + str("gpt2");
  auto info = [&](const std::string& name, std::vector<uint64_t> dims, uint32_t type, uint64_t offset) {
    std::string s = str(name) + le<uint32_t>(uint32_t(dims.size()));
    for (uint64_t d : dims) s += le<uint64_t>(d);
    return s + le<uint32_t>(type) + le<uint64_t>(offset);
  };
  auto with_data = [](std::string head, size_t data_bytes) {
    head.append((32 - head.size() % 32) % 32, '\0');
    return head + std::string(data_bytes, '\x01');
  };
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"GGU", {"file is 3 bytes, shorter than the 24-byte header"}},
      {"GGML" + std::string(20, '\0'), {"does not start with \"GGUF\""}},
      {file(1, 0, 0, ""), {"version 1 is not supported"}},
      {file(3, 0, 1, str("general.architecture")), {"the value of general.architecture", "needs 4 bytes"}},
      {file(3, 0, 1, str("k") + le<uint32_t>(13)), {"the value of k has type 13"}},
      {file(3, 0, 1, str("k") + le<uint32_t>(9) + le<uint32_t>(9) + le<uint64_t>(1)), {"array of arrays"}},
      {file(3, 0, 1, str("k") + le<uint32_t>(9) + le<uint32_t>(4) + le<uint64_t>(1ull << 40)), {"claims"}},
      {file(3, 0, 2, kv + kv), {"metadata key general.architecture appears twice"}},
      {file(3, 0, 1, str("general.alignment") + le<uint32_t>(4) + le<uint32_t>(24)), {"general.alignment 24 is not a power of two"}},
      {file(3, 0, 1, str("general.alignment") + le<uint32_t>(5) + le<int32_t>(32)), {"general.alignment is not a u32"}},
      {file(3, 0, 1, str("k") + le<uint32_t>(8) + le<uint64_t>(1000) + "ab"), {"needs 1000 bytes"}},
      {with_data(file(3, 1, 0, info("w", {4}, 2, 0)), 32), {"tensor 'w': ggml type 2 is not one Loom reads"}},
      {with_data(file(3, 1, 0, info("w", {2, 2, 2, 2, 2}, 0, 0)), 128), {"5 dims, not 1 to 4"}},
      {with_data(file(3, 1, 0, info("w", {4, 0}, 0, 0)), 32), {"dim 1 is 0"}},
      {with_data(file(3, 1, 0, info("w", {1ull << 62, 4}, 0, 0)), 32), {"overflows"}},
      {with_data(file(3, 1, 0, info("w", {16}, 8, 0)), 32), {"rows of 16 elements are not whole q8_0 blocks of 32"}},
      {with_data(file(3, 1, 0, info("w", {16}, 0, 0)), 32), {"tensor 'w' (64 bytes at data offset 0) lies outside the 32 data bytes"}},
      {with_data(file(3, 1, 0, info("w", {4}, 0, 8)), 32), {"data offset 8, not a multiple of 32"}},
      {with_data(file(3, 1, 0, info(std::string(64, 'x'), {4}, 0, 0)), 32), {"the name is 64 bytes, the limit is 63"}},
      {with_data(file(3, 2, 0, info("w", {4}, 0, 0) + info("w", {4}, 0, 32)), 64), {"tensor 'w' appears twice"}},
      {with_data(file(3, 2, 0, info("a", {16}, 0, 0) + info("b", {4}, 0, 32)), 64), {"tensors 'a' and 'b' overlap"}},
      {file(3, 2, 0, info("a", {4}, 0, 0)), {"a tensor name", "needs 8 bytes"}},
  };
  for (const auto& [bytes, fragments] : cases) {
    SCOPED_TRACE(fragments[0]);
    write_bytes(dir / "bad.gguf", bytes);
    expect_error([&] { gguf::File f(dir / "bad.gguf"); }, fragments);
  }
  // The same fields, sound: read.
  write_bytes(dir / "ok.gguf", with_data(file(2, 2, 1, kv + info("a", {4, 2}, 0, 0) + info("b", {32}, 8, 32)), 96));
  gguf::File ok(dir / "ok.gguf");
  EXPECT_EQ(ok.tensor("a").shape, (Shape{2, 4}));
  EXPECT_EQ(ok.tensor("b").nbytes, 34u);
  const gguf::Value* arch = gguf::find(ok.metadata(), "general.architecture");
  ASSERT_TRUE(arch && arch->as_string());
  EXPECT_EQ(*arch->as_string(), "gpt2");
  EXPECT_FALSE(arch->as_integer() || arch->as_number());
}
