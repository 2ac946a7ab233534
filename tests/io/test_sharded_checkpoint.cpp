// Sharded training checkpoints: per-rank slice files plus index.json, read back under every
// possible range and compared element by element with the values written; every malformed
// index or rank file rejected naming the file and tensor; load_hf on a training checkpoint.
#include <gtest/gtest.h>

#include "io_testing.h"
#include "loom/io/hf_checkpoint.h"
#include "loom/io/safetensors.h"
#include "loom/io/sharded_checkpoint.h"
#include "loom/models/hf_names.h"
#include "loom/nn/transformer.h"
#include "loom/ops/shape.h"

using namespace loom;
using namespace loom::io;
using namespace loom::io_testing;
using nlohmann::json;

namespace {

// Three tensors with distinct, exactly representable values (tensor k, element i -> 1000k + i/4).
struct Sample {
  std::map<std::string, Shape> shapes{{"a", {6, 5}}, {"b", {7}}, {"c", {3, 4, 2}}};
  std::map<std::string, std::vector<float>> values;
  Sample() {
    int k = 0;
    for (const auto& [name, shape] : shapes) {
      ++k;
      for (int64_t i = 0; i < numel_of(shape); ++i) values[name].push_back(float(1000 * k) + float(i) / 4);
    }
  }
  // values[name][begin, end) as a tensor of the given shape (1-D when none is given).
  Tensor piece(const std::string& name, int64_t begin, int64_t end, Shape shape = {}) const {
    std::vector<double> v(values.at(name).begin() + begin, values.at(name).begin() + end);
    return Tensor::from_vector(v, shape.empty() ? Shape{end - begin} : shape);
  }
};

// Uneven ranges: rank 0 holds the start of a and c, rank 1 one element of a and all of b (none
// of c), rank 2 nothing at all, rank 3 the rest of a and c.
std::vector<std::vector<FlatSlice>> sample_layout() {
  return {{{"a", 0, 11}, {"c", 0, 5}}, {{"a", 11, 12}, {"b", 0, 7}}, {}, {{"a", 12, 30}, {"c", 5, 24}}};
}

void write_sample(const fs::path& dir, const Sample& s) {
  const auto layout = sample_layout();
  for (size_t r = 0; r < layout.size(); ++r) {
    if (layout[r].empty()) continue;
    std::vector<std::pair<FlatSlice, Tensor>> slices;
    for (const FlatSlice& f : layout[r]) {
      // Data of any shape is accepted and stored 1-D.
      Shape shape = f.name == "c" && f.begin == 5 ? Shape{19, 1} : Shape{};
      slices.emplace_back(f, s.piece(f.name, f.begin, f.end, shape));
    }
    write_rank_shard(dir, int(r), slices);
  }
  write_shard_index(dir, s.shapes, layout, json{{"layout", "test"}, {"world", 4}});
}

json read_index(const fs::path& dir) { return json::parse(read_bytes(dir / "index.json")); }
void write_index(const fs::path& dir, const json& j) { write_bytes(dir / "index.json", j.dump()); }

}  // namespace

TEST(ShardedCheckpoint, RankFileNames) {
  EXPECT_EQ(rank_file_name(0), "rank00000.safetensors");
  EXPECT_EQ(rank_file_name(3), "rank00003.safetensors");
  EXPECT_EQ(rank_file_name(123456), "rank123456.safetensors");
  expect_error([] { rank_file_name(-1); }, {"rank -1"});
}

TEST(ShardedCheckpoint, WritesRankFilesAndIndex) {
  TempDir dir;
  Sample s;
  write_sample(dir.path(), s);
  EXPECT_TRUE(fs::exists(dir / "rank00000.safetensors"));
  EXPECT_TRUE(fs::exists(dir / "rank00001.safetensors"));
  EXPECT_FALSE(fs::exists(dir / "rank00002.safetensors"));
  EXPECT_TRUE(fs::exists(dir / "rank00003.safetensors"));

  TensorMap r3 = read_safetensors(dir / "rank00003.safetensors");
  ASSERT_EQ(r3.size(), 2u);
  EXPECT_EQ(r3.at("c").shape(), (Shape{19}));
  EXPECT_EQ(r3.at("c").dtype(), DType::f32);
  for (int64_t i = 0; i < 19; ++i) EXPECT_EQ(r3.at("c").data<float>()[i], s.values.at("c")[5 + i]);

  const json j = read_index(dir.path());
  EXPECT_EQ(j.at("format"), "loom-sharded");
  EXPECT_EQ(j.at("version"), 2);
  EXPECT_EQ(j.at("metadata"), (json{{"layout", "test"}, {"world", 4}}));
  EXPECT_EQ(j.at("tensors").size(), 3u);
  EXPECT_EQ(j.at("tensors").at("c").at("shape"), (json{3, 4, 2}));
  EXPECT_EQ(j.at("tensors").at("c").at("dtype"), "F32");
  const json want_a = json::array({json{{"file", "rank00000.safetensors"}, {"begin", 0}, {"end", 11}},
                                   json{{"file", "rank00001.safetensors"}, {"begin", 11}, {"end", 12}},
                                   json{{"file", "rank00003.safetensors"}, {"begin", 12}, {"end", 30}}});
  EXPECT_EQ(j.at("tensors").at("a").at("shards"), want_a);
  EXPECT_EQ(read_bytes(dir / "index.json").find("rank00002"), std::string::npos);

  EXPECT_TRUE(is_sharded_checkpoint(dir.path()));
  TempDir empty;
  EXPECT_FALSE(is_sharded_checkpoint(empty.path()));
  write_bytes(empty / "index.json", R"({"format": "something-else"})");
  EXPECT_FALSE(is_sharded_checkpoint(empty.path()));
  write_bytes(empty / "index.json", R"({"format": )");
  expect_error([&] { is_sharded_checkpoint(empty.path()); }, {"index.json", "invalid JSON"});
}

TEST(ShardedCheckpoint, ReadsEveryRangeAcrossFiles) {
  TempDir dir;
  Sample s;
  write_sample(dir.path(), s);
  const ShardedCheckpoint ckpt(dir.path());
  EXPECT_EQ(ckpt.shapes(), s.shapes);
  EXPECT_EQ(ckpt.metadata().at("world"), 4);
  EXPECT_TRUE(ckpt.has("b"));
  EXPECT_FALSE(ckpt.has("d"));

  for (const auto& [name, shape] : s.shapes) {
    SCOPED_TRACE(name);
    const std::vector<float>& want = s.values.at(name);
    const Tensor whole = ckpt.read(name);
    ASSERT_EQ(whole.shape(), shape);
    for (int64_t i = 0; i < whole.numel(); ++i) EXPECT_EQ(whole.data<float>()[i], want[size_t(i)]) << i;
    // Every range, empty ones and single elements included: a's spans up to three files.
    const int64_t n = numel_of(shape);
    for (int64_t b = 0; b <= n; ++b) {
      for (int64_t e = b; e <= n; ++e) {
        Tensor out = Tensor::full({e - b}, -1.0);
        ckpt.read(name, b, e, out);
        for (int64_t i = 0; i < e - b; ++i) ASSERT_EQ(out.data<float>()[i], want[size_t(b + i)]) << "[" << b << ", " << e << ") at " << i;
      }
    }
  }
  // The destination may have any shape.
  Tensor out = Tensor::zeros({2, 3});
  ckpt.read("a", 9, 15, out);
  for (int64_t i = 0; i < 6; ++i) EXPECT_EQ(out.data<float>()[i], s.values.at("a")[size_t(9 + i)]);

  expect_error([&] { ckpt.read("d"); }, {"tensor d", "not in the checkpoint"});
  expect_error(
      [&] {
        Tensor t = Tensor::zeros({5});
        ckpt.read("b", 3, 8, t);
      },
      {"tensor b", "[3, 8)", "outside [0, 7)"});
  expect_error(
      [&] {
        Tensor t = Tensor::zeros({4});
        ckpt.read("b", 0, 3, t);
      },
      {"tensor b", "3 elements"});
}

// A version 1 index (written before shards had boxes) reads as it did.
TEST(ShardedCheckpoint, ReadsVersionOne) {
  TempDir dir;
  Sample s;
  write_sample(dir.path(), s);
  json j = read_index(dir.path());
  j["version"] = 1;
  write_index(dir.path(), j);
  const ShardedCheckpoint ckpt(dir.path());
  const Tensor c = ckpt.read("c");
  for (int64_t i = 0; i < c.numel(); ++i) EXPECT_EQ(c.data<float>()[i], s.values.at("c")[size_t(i)]);
}

// Tensor-parallel blocks cut further by ZeRO ranges: w (4, 6) in two column blocks, the second
// split across two files at a flat position inside a row; c (3, 4, 2) in two blocks along its
// middle dim, one of them split. Every box of w with every range of it, every range of the whole
// of both, reads back the values written.
TEST(ShardedCheckpoint, ReadsAnyBoxFromBoxedShards) {
  TempDir dir;
  const std::map<std::string, Shape> shapes{{"w", {4, 6}}, {"c", {3, 4, 2}}};
  auto value = [](const std::string& name, const std::vector<int64_t>& at) {
    return name == "w" ? 100.0 * double(at[0]) + double(at[1]) : 100.0 * double(at[0]) + 10.0 * double(at[1]) + double(at[2]);
  };
  // The values of elements [begin, end) of the box `box` at `offset` of tensor `name`.
  auto box_values = [&](const std::string& name, const Shape& offset, const Shape& box, int64_t begin, int64_t end) {
    std::vector<double> out;
    for (int64_t i = begin; i < end; ++i) {
      std::vector<int64_t> at(box.size());
      for (int64_t r = i, d = int64_t(box.size()) - 1; d >= 0; --d) at[size_t(d)] = offset[size_t(d)] + r % box[size_t(d)], r /= box[size_t(d)];
      out.push_back(value(name, at));
    }
    return out;
  };
  const std::vector<std::vector<FlatSlice>> owned = {
      {{"w", 0, 12, {0, 0}, {4, 3}}, {"c", 0, 12, {0, 0, 0}, {3, 2, 2}}},
      {{"w", 0, 5, {0, 3}, {4, 3}}, {"c", 0, 7, {0, 2, 0}, {3, 2, 2}}},
      {{"w", 5, 12, {0, 3}, {4, 3}}, {"c", 7, 12, {0, 2, 0}, {3, 2, 2}}}};
  for (size_t r = 0; r < owned.size(); ++r) {
    std::vector<std::pair<FlatSlice, Tensor>> slices;
    for (const FlatSlice& f : owned[r]) slices.emplace_back(f, Tensor::from_vector(box_values(f.name, f.offset, f.box, f.begin, f.end), {f.end - f.begin}));
    write_rank_shard(dir.path(), int(r), slices);
  }
  write_shard_index(dir.path(), shapes, owned, json::object());
  const json j = read_index(dir.path());
  EXPECT_EQ(j.at("tensors").at("w").at("shards").at(2),
            (json{{"file", "rank00002.safetensors"}, {"begin", 5}, {"end", 12}, {"offset", {0, 3}}, {"box", {4, 3}}}));
  const ShardedCheckpoint ckpt(dir.path());
  auto check = [&](const FlatSlice& part) {
    Tensor out = Tensor::full({part.end - part.begin}, -1.0);
    ckpt.read(part, out);
    const Shape& box = part.box.empty() ? shapes.at(part.name) : part.box;
    const std::vector<double> want = box_values(part.name, part.box.empty() ? Shape(box.size(), 0) : part.offset, box, part.begin, part.end);
    for (size_t i = 0; i < want.size(); ++i)
      ASSERT_EQ(out.data<float>()[i], want[i]) << part.name << fmt::format(" box {} at {}", part.box, part.offset) << " [" << part.begin << ", "
                                               << part.end << ") element " << i;
  };
  for (const auto& [name, shape] : shapes)
    for (int64_t b = 0; b <= numel_of(shape); ++b)
      for (int64_t e = b; e <= numel_of(shape); ++e) check({name, b, e});
  for (int64_t r0 = 0; r0 < 4; ++r0)
    for (int64_t r1 = r0 + 1; r1 <= 4; ++r1)
      for (int64_t c0 = 0; c0 < 6; ++c0)
        for (int64_t c1 = c0 + 1; c1 <= 6; ++c1) {
          const int64_t n = (r1 - r0) * (c1 - c0);
          for (int64_t b = 0; b <= n; ++b)
            for (int64_t e = b; e <= n; ++e) check({"w", b, e, {r0, c0}, {r1 - r0, c1 - c0}});
        }
  check({"c", 3, 11, {1, 1, 0}, {2, 3, 2}});
  expect_error([&] {
    Tensor t = Tensor::zeros({4});
    ckpt.read({"w", 0, 4, {3, 4}, {2, 2}}, t);
  }, {"tensor w", "box [2, 2] at [3, 4] is outside its shape [4, 6]"});
}

TEST(ShardedCheckpoint, WriteIndexRejectsBadBoxTiling) {
  TempDir dir;
  const std::map<std::string, Shape> shapes{{"w", {4, 6}}};
  auto index = [&](std::vector<std::vector<FlatSlice>> owned) {
    return [&, owned] { write_shard_index(dir.path(), shapes, owned, json::object()); };
  };
  const FlatSlice left{"w", 0, 12, {0, 0}, {4, 3}};
  expect_error(index({{left}, {{"w", 0, 11, {0, 3}, {4, 3}}}}), {"tensor w", "1 of its 24 elements are in no slice"});
  expect_error(index({{left}, {{"w", 0, 12, {0, 2}, {4, 3}}}}),
               {"tensor w", "[0, 12) of box [4, 3] at [0, 2] in rank00001.safetensors overlaps slice [0, 12) of box [4, 3] at [0, 0]"});
  expect_error(index({{left}, {{"w", 0, 12}}}), {"tensor w", "overlaps"});
  expect_error(index({{left}, {{"w", 0, 12, {0, 4}, {4, 3}}}}), {"rank 1", "box [4, 3] at [0, 4] is empty or outside the shape [4, 6]"});
  expect_error(index({{left}, {{"w", 0, 13, {0, 3}, {4, 3}}}}), {"rank 1", "outside [0, 12)"});
  EXPECT_FALSE(fs::exists(dir / "index.json"));
  index({{{"w", 0, 12, {0, 0}, {2, 6}}}, {{"w", 12, 24}}})();  // a box beside a range of the whole flattening
  const ShardedCheckpoint ckpt(dir.path());
  EXPECT_EQ(ckpt.shapes().at("w"), (Shape{4, 6}));
}

TEST(ShardedCheckpoint, WriteRankShardRejectsMismatchedData) {
  TempDir dir;
  Sample s;
  expect_error(
      [&] {
        write_rank_shard(dir.path(), 0, {{FlatSlice{"a", 0, 5}, s.piece("a", 0, 4)}});
      },
      {"rank00000.safetensors", "a", "[0, 5)", "4 elements"});
  expect_error([&] { write_rank_shard(dir.path(), 0, {{FlatSlice{"a", 0, 4}, Tensor::zeros({4}, DType::f64)}}); }, {"a", "f64"});
  expect_error([&] { write_rank_shard(dir.path(), 0, {{FlatSlice{"a", 3, 3}, Tensor::zeros({0})}}); }, {"a", "[3, 3)", "empty"});
  expect_error(
      [&] {
        write_rank_shard(dir.path(), 1, {{FlatSlice{"a", 0, 2}, s.piece("a", 0, 2)}, {FlatSlice{"a", 4, 6}, s.piece("a", 4, 6)}});
      },
      {"rank00001.safetensors", "second slice of a"});
  EXPECT_FALSE(fs::exists(dir / "rank00000.safetensors"));
  EXPECT_FALSE(fs::exists(dir / "rank00001.safetensors"));
}

TEST(ShardedCheckpoint, WriteIndexRejectsBadTiling) {
  TempDir dir;
  const std::map<std::string, Shape> shapes{{"a", {6, 5}}, {"b", {7}}};
  auto index = [&](std::vector<std::vector<FlatSlice>> owned) {
    return [&, owned] { write_shard_index(dir.path(), shapes, owned, json::object()); };
  };
  const FlatSlice b_all{"b", 0, 7};
  expect_error(index({{{"a", 0, 10}, b_all}, {{"a", 12, 30}}}), {"index.json", "tensor a", "elements [10, 12) are in no slice"});
  expect_error(index({{{"a", 0, 29}, b_all}}), {"tensor a", "elements [29, 30) are in no slice"});
  expect_error(index({{{"a", 5, 30}, b_all}}), {"tensor a", "elements [0, 5) are in no slice"});
  expect_error(index({{{"a", 0, 12}, b_all}, {{"a", 10, 30}}}),
               {"tensor a", "[10, 30) in rank00001.safetensors overlaps", "[0, 12) in rank00000.safetensors"});
  expect_error(index({{{"a", 0, 30}, b_all}, {{"a", 0, 30}}}), {"tensor a", "[0, 30) in rank00001.safetensors overlaps"});
  expect_error(index({{{"a", 0, 31}, b_all}}), {"rank 0", "[0, 31) of tensor a", "outside [0, 30)"});
  expect_error(index({{{"a", -1, 30}, b_all}}), {"[-1, 30) of tensor a", "outside [0, 30)"});
  expect_error(index({{{"a", 0, 30}, b_all}, {{"a", 4, 4}}}), {"rank 1", "[4, 4) of tensor a", "empty"});
  expect_error(index({{{"a", 0, 30}, b_all}, {{"zz", 0, 3}}}), {"rank 1", "[0, 3) of tensor zz", "no such tensor"});
  expect_error(index({{{"a", 0, 30}}}), {"tensor b", "has no slices"});
  expect_error(index({{{"a", 0, 10}, {"a", 10, 30}, b_all}}), {"rank 0", "[10, 30) of tensor a", "second slice"});
  EXPECT_FALSE(fs::exists(dir / "index.json"));
  index({{{"a", 0, 10}}, {b_all, {"a", 10, 30}}})();
  EXPECT_TRUE(fs::exists(dir / "index.json"));
}

TEST(ShardedCheckpoint, ReaderRejectsBadIndex) {
  TempDir dir;
  Sample s;
  write_sample(dir.path(), s);
  const json good = read_index(dir.path());
  auto with = [&](auto edit) {
    json j = good;
    edit(j);
    write_index(dir.path(), j);
    return [&] { ShardedCheckpoint ckpt(dir.path()); };
  };
  expect_error(with([](json& j) { j["format"] = "loom-shardedX"; }), {"index.json", "\"format\"", "loom-shardedX"});
  expect_error(with([](json& j) { j.erase("format"); }), {"index.json", "no \"format\" field"});
  expect_error(with([](json& j) { j["version"] = 3; }), {"index.json", "\"version\" is 3"});
  expect_error(with([](json& j) { j["version"] = 0; }), {"index.json", "\"version\" is 0"});
  expect_error(with([](json& j) { j["tensors"]["a"]["shards"][0]["box"] = json{6, 5}; }), {"tensor a", "shard 0", "without the other"});
  expect_error(with([](json& j) { j["tensors"]["a"]["shards"][0]["box"] = json{6, 5}, j["tensors"]["a"]["shards"][0]["offset"] = json{1, 0}; }),
               {"tensor a", "shard 0", "box [6, 5] at [1, 0] is empty or outside the shape [6, 5]"});
  expect_error(with([](json& j) { j["tensors"]["a"]["shards"][0]["box"] = json{30}, j["tensors"]["a"]["shards"][0]["offset"] = json{0}; }),
               {"tensor a", "shard 0", "does not have the 2 dimensions"});
  expect_error(with([](json& j) { j.erase("metadata"); }), {"index.json", "no \"metadata\" field"});
  expect_error(with([](json& j) { j["tensors"] = json::array(); }), {"index.json", "\"tensors\""});
  expect_error(with([](json& j) { j["tensors"]["a"].erase("shards"); }), {"index.json", "tensor a", "no \"shards\" field"});
  expect_error(with([](json& j) { j["tensors"]["a"]["shards"] = "x"; }), {"index.json", "tensor a", "\"shards\""});
  expect_error(with([](json& j) { j["tensors"]["a"]["dtype"] = "F16"; }), {"tensor a", "dtype \"F16\""});
  expect_error(with([](json& j) { j["tensors"]["a"]["shape"] = json{6, -5}; }), {"tensor a", "shape [6,-5]", "-5"});
  expect_error(with([](json& j) { j["tensors"]["a"]["shape"] = json{6, 6}; }), {"tensor a", "elements [30, 36) are in no shard"});
  expect_error(with([](json& j) { j["tensors"]["a"]["shards"][1]["file"] = "../rank00001.safetensors"; }),
               {"index.json", "tensor a", "../rank00001.safetensors", "not a plain file name"});
  expect_error(with([](json& j) { j["tensors"]["a"]["shards"][1]["file"] = "sub/rank00001.safetensors"; }),
               {"tensor a", "sub/rank00001.safetensors", "not a plain file name"});
  expect_error(with([](json& j) { j["tensors"]["a"]["shards"][1]["file"] = ".."; }), {"tensor a", "not a plain file name"});
  expect_error(with([](json& j) { j["tensors"]["a"]["shards"][1]["file"] = 5; }), {"tensor a", "not a plain file name"});
  expect_error(with([](json& j) { j["tensors"]["a"]["shards"][1]["begin"] = 11.5; }), {"tensor a", "shard 1", "not both integers"});
  expect_error(with([](json& j) { j["tensors"]["a"]["shards"][1].erase("end"); }), {"tensor a", "shard 1", "no \"end\" field"});
  expect_error(with([](json& j) { j["tensors"]["a"]["shards"][1]["end"] = 13; }),
               {"tensor a", "shard [12, 30) in rank00003.safetensors overlaps shard [11, 13) in rank00001.safetensors"});
  expect_error(with([](json& j) { j["tensors"]["b"]["shards"][0]["end"] = 8; }), {"tensor b", "[0, 8)", "outside [0, 7)"});
  expect_error(with([](json& j) { j["tensors"]["a"]["shards"].erase(1); }), {"tensor a", "elements [11, 12) are in no shard"});

  write_bytes(dir / "index.json", "{\"format\": \"loom-sharded\", ");
  expect_error([&] { ShardedCheckpoint ckpt(dir.path()); }, {"index.json", "invalid JSON"});
  write_bytes(dir / "index.json", R"({"format": "loom-sharded", "format": "loom-sharded"})");
  expect_error([&] { ShardedCheckpoint ckpt(dir.path()); }, {"index.json", "appears twice"});
  fs::remove(dir / "index.json");
  expect_error([&] { ShardedCheckpoint ckpt(dir.path()); }, {"index.json", "no such file"});
}

TEST(ShardedCheckpoint, ReaderRejectsBadRankFiles) {
  TempDir dir;
  Sample s;
  write_sample(dir.path(), s);
  const fs::path r1 = dir / "rank00001.safetensors";
  const TensorMap good = read_safetensors(r1);
  auto read_b = [&] { ShardedCheckpoint(dir.path()).read("b"); };

  write_safetensors(r1, {{"a", good.at("a")}, {"b", s.piece("b", 0, 6)}});
  expect_error(read_b, {"rank00001.safetensors", "tensor b", "shape [6]", "[7]"});
  write_safetensors(r1, {{"a", good.at("a")}, {"b", s.piece("b", 0, 7, {7, 1})}});
  expect_error(read_b, {"rank00001.safetensors", "tensor b", "shape [7, 1]"});
  write_safetensors(r1, {{"a", good.at("a")}, {"b", Tensor::zeros({7}, DType::f64)}});
  expect_error(read_b, {"rank00001.safetensors", "tensor b", "f64"});
  write_safetensors(r1, {{"a", good.at("a")}});
  expect_error(read_b, {"rank00001.safetensors", "tensor b", "missing"});
  // Only the files a read needs are opened: a holds nothing in rank 1 beyond element 11.
  const ShardedCheckpoint ckpt(dir.path());
  Tensor t = Tensor::zeros({11});
  ckpt.read("a", 0, 11, t);
  fs::remove(r1);
  expect_error([&] { ckpt.read("a"); }, {"rank00001.safetensors", "tensor a"});
  write_bytes(r1, "garbage");
  expect_error(read_b, {"rank00001.safetensors"});
}

TEST(ShardedCheckpoint, LoadHfReadsTrainingCheckpoint) {
  TempDir dir;
  const models::ModelConfig c = models::preset("llama-tiny");
  nn::TransformerLM m(c);
  m.init(11);
  const std::map<std::string, Tensor> state = m.state_dict();

  // Parameters and (skipped) optimizer state over two ranks, split at a third of each tensor.
  std::map<std::string, Shape> shapes;
  std::vector<std::vector<FlatSlice>> owned(2);
  std::vector<std::vector<std::pair<FlatSlice, Tensor>>> data(2);
  for (const auto& [name, t] : state) {
    for (const std::string prefix : {"param.", "exp_avg."}) {
      const Tensor flat = prefix == "param." ? ops::flatten(t.detach()) : Tensor::zeros({t.numel()});
      shapes[prefix + name] = t.shape();
      const int64_t n = t.numel(), cut = n / 3;
      for (int r = 0; r < 2; ++r) {
        const FlatSlice f{prefix + name, r == 0 ? 0 : cut, r == 0 ? cut : n};
        if (f.begin == f.end) continue;
        owned[size_t(r)].push_back(f);
        data[size_t(r)].emplace_back(f, ops::narrow(flat, 0, f.begin, f.end - f.begin));
      }
    }
  }
  for (int r = 0; r < 2; ++r) write_rank_shard(dir / "ckpt", r, data[size_t(r)]);
  write_shard_index(dir / "ckpt", shapes, owned, json{{"dp", 2}});
  write_bytes(dir / "ckpt" / "config.json", models::hf_config_json(c).dump(2));

  auto expect_state = [&](const ModelWeights& w) {
    EXPECT_EQ(models::hf_config_json(w.config), models::hf_config_json(c));
    ASSERT_EQ(w.state.size(), state.size());
    for (const auto& [name, t] : state) {
      SCOPED_TRACE(name);
      ASSERT_TRUE(w.state.count(name));
      EXPECT_EQ(w.state.at(name).shape(), t.shape());
      EXPECT_EQ(bytes_of(w.state.at(name)), bytes_of(t));
    }
  };
  const ModelWeights w = load_hf(dir / "ckpt");
  expect_state(w);
  // What `loom convert --from hf:CKPT --to hf:OUT` does.
  save_hf(dir / "hf", w.config, w.state);
  expect_state(load_hf(dir / "hf"));
}
