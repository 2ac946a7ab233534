// NF4 with double quantisation, the blockwise 8-bit quantiser and row-wise int8 against
// tests/quant/nf4_reference.py (numpy, from bitsandbytes' published algorithm): packed codes,
// quantised absmax, scales, offset and dequantised values equal bit for bit on random and
// adversarial weights; the dynamic map equals torch's as bitsandbytes builds it; the NF4 error
// bound.
#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "loom/core/rng.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/shape.h"
#include "loom/quant/int8.h"
#include "loom/quant/nf4.h"

using namespace loom;
using namespace loom::quant;
namespace fs = std::filesystem;

namespace {

struct Case {
  std::string name;
  std::string kind;       // "nf4", "blockwise8" or "int8"
  Tensor x;               // f32 or bf16
  int64_t blocksize = 0;  // blockwise8's
};

template <typename T> std::vector<T> read_raw(const fs::path& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  LOOM_CHECK(f.good(), "cannot open {}", path.string());
  std::vector<T> v(size_t(f.tellg()) / sizeof(T));
  f.seekg(0);
  f.read(reinterpret_cast<char*>(v.data()), std::streamsize(v.size() * sizeof(T)));
  return v;
}

template <typename T> std::vector<T> values(const Tensor& t) { return std::vector<T>(t.data<T>(), t.data<T>() + t.numel()); }

std::vector<uint32_t> bits(const std::vector<float>& v) {
  std::vector<uint32_t> out;
  for (float x : v) out.push_back(std::bit_cast<uint32_t>(x));
  return out;
}

// Equal element for element; on failure, how many differ and the first.
template <typename T> void expect_same(const std::vector<T>& loom, const std::vector<T>& ref, const std::string& what) {
  ASSERT_EQ(loom.size(), ref.size()) << what;
  size_t differ = 0, first = 0;
  for (size_t i = loom.size(); i-- > 0;)
    if (loom[i] != ref[i]) ++differ, first = i;
  EXPECT_EQ(differ, 0u) << what << ": first at " << first << ": loom " << +loom[first] << ", reference " << +ref[first];
}

std::string numpy_missing() {
  const std::string cmd = std::string("'") + LOOM_PYTHON + "' -c 'import numpy' > /dev/null 2>&1";
  return std::system(cmd.c_str()) == 0 ? "" : std::string(LOOM_PYTHON) + " has no numpy (Debian: python3-numpy)";
}

// Runs the reference over the cases in a folder of its own, removed at the end.
class Reference {
 public:
  explicit Reference(const std::vector<Case>& cases)
      : dir_(fs::temp_directory_path() / ("loom_nf4_" + std::to_string(getpid()) + "_" + std::to_string(counter_++))) {
    fs::create_directories(dir_);
    nlohmann::json manifest = {{"cases", nlohmann::json::array()}};
    for (const Case& c : cases) {
      fs::create_directories(dir_ / c.name);
      const Tensor f = ops::cast(c.x, DType::f32);
      std::ofstream(dir_ / c.name / "in.f32", std::ios::binary).write(static_cast<const char*>(f.raw_data()), std::streamsize(f.nbytes()));
      manifest["cases"].push_back({{"name", c.name}, {"kind", c.kind}, {"shape", c.x.shape()}, {"blocksize", c.blocksize}});
    }
    std::ofstream(dir_ / "manifest.json") << manifest.dump();
    const std::string cmd = std::string("'") + LOOM_PYTHON + "' '" + LOOM_SOURCE_DIR + "/tests/quant/nf4_reference.py' '" + dir_.string() + "'";
    ok_ = std::system(cmd.c_str()) == 0;
  }
  ~Reference() { fs::remove_all(dir_); }
  Reference(const Reference&) = delete;
  Reference& operator=(const Reference&) = delete;
  bool ok() const { return ok_; }
  template <typename T> std::vector<T> read(const std::string& name) const { return read_raw<T>(dir_ / name); }
  bool has(const std::string& name) const { return fs::exists(dir_ / name); }

 private:
  static inline int counter_ = 0;
  fs::path dir_;
  bool ok_ = false;
};

void compare(const Case& c, const Reference& ref) {
  SCOPED_TRACE(c.name);
  const std::string d = c.name + "/";
  if (c.kind == "int8") {
    const Int8Weight q = quantize_int8(c.x);
    expect_same(values<uint8_t>(q.codes), ref.read<uint8_t>(d + "codes.u8"), "codes");
    expect_same(bits(values<float>(q.absmax)), bits(ref.read<float>(d + "absmax.f32")), "absmax");
    expect_same(bits(values<float>(dequantize_int8(q))), bits(ref.read<float>(d + "deq.f32")), "dequantised");
    return;
  }
  if (c.kind == "blockwise8") {
    const Blockwise8bit q = quantize_blockwise(c.x, c.blocksize);
    expect_same(values<uint8_t>(q.codes), ref.read<uint8_t>(d + "codes.u8"), "codes");
    expect_same(bits(values<float>(q.absmax)), bits(ref.read<float>(d + "absmax.f32")), "absmax");
    expect_same(bits(values<float>(dequantize_blockwise(q))), bits(ref.read<float>(d + "deq.f32")), "dequantised");
    return;
  }
  const Nf4Weight q = quantize_nf4(c.x);
  expect_same(values<uint8_t>(q.codes), ref.read<uint8_t>(d + "codes.u8"), "packed codes");
  expect_same(values<uint8_t>(q.absmax), ref.read<uint8_t>(d + "absmax.u8"), "quantised absmax");
  expect_same(bits(values<float>(q.absmax_scale)), bits(ref.read<float>(d + "scale.f32")), "absmax scales");
  expect_same(bits({q.offset}), bits(ref.read<float>(d + "offset.f32")), "offset");
  expect_same(bits(nf4_block_absmax(q)), bits(ref.read<float>(d + "absmax_dq.f32")), "dequantised absmax");
  const Tensor w = dequantize_nf4(q);
  EXPECT_EQ(w.shape(), c.x.shape());
  expect_same(bits(values<float>(w)), bits(ref.read<float>(d + "deq.f32")), "dequantised weight");
}

Tensor from_floats(const std::vector<float>& v) {
  Tensor t = Tensor::empty({int64_t(v.size())});
  std::copy(v.begin(), v.end(), t.data<float>());
  return t;
}

// Blocks of 64 (blocksize) holding `vals` (zero padded), each block also holding ±absmax so that
// its absmax is `absmax`.
std::vector<float> blocks_with_absmax(const std::vector<float>& vals, float absmax, size_t blocksize = 64) {
  std::vector<float> out;
  for (size_t i = 0; i < vals.size(); i += blocksize - 2) {
    out.push_back(absmax);
    out.push_back(-absmax);
    for (size_t j = i; j < std::min(vals.size(), i + blocksize - 2); ++j) out.push_back(vals[j]);
    out.resize((out.size() + blocksize - 1) / blocksize * blocksize, 0.0f);
  }
  return out;
}

std::vector<float> around(float x, int ulps) {
  std::vector<float> out{x};
  for (float lo = x, hi = x; ulps-- > 0;) {
    lo = std::nextafter(lo, -2.0f), hi = std::nextafter(hi, 2.0f);
    out.push_back(lo), out.push_back(hi);
  }
  return out;
}

// The NF4 values and, around each midpoint of neighbours (its float64 value as float32, which is
// at most a step from the kernel's threshold), the floats within two steps.
std::vector<float> nf4_edges() {
  std::vector<float> v(kNf4Values.begin(), kNf4Values.end());
  for (size_t k = 0; k + 1 < kNf4Values.size(); ++k)
    for (float x : around(float((double(kNf4Values[k]) + double(kNf4Values[k + 1])) / 2), 2)) v.push_back(x);
  return v;
}

std::vector<Case> nf4_cases() {
  Generator gen(7);
  auto randn = [&](const Shape& s, double std = 1.0) { return loom::randn(s, gen.next(uint64_t(numel_of(s))), 0.0, std); };
  std::vector<Case> cases = {
      {"normal_64", "nf4", randn({64})},
      {"odd_15", "nf4", randn({3, 5})},              // one partial block, odd: the last byte's low nibble is padding
      {"partial_231", "nf4", randn({7, 33})},
      {"two_stats_blocks", "nf4", randn({130, 130}, 0.02)},  // 265 blocks: a second, partial, block of 256 absmax
      {"odd_3_stats_blocks", "nf4", randn({1, 64 * 256 * 2 + 64 * 3 + 1}, 3.0)},
      {"weight_512x768", "nf4", randn({512, 768}, 0.02)},  // 6144 blocks, 24 stats blocks
      {"zeros", "nf4", Tensor::zeros({200})},
      {"constant", "nf4", Tensor::full({64 * 300}, 0.5)},  // every absmax the offset: the 8-bit blocks are all zero
      {"bf16", "nf4", randn({48, 64})},
  };
  cases.back().x = ops::cast(cases.back().x, DType::bf16);
  {
    Tensor x = randn({640});
    std::fill_n(x.data<float>() + 128, 64, 0.0f);  // a block of zeros among others
    cases.push_back({"zero_block", "nf4", x});
  }
  {
    std::vector<float> v(64 * 4, 0.0f);
    for (int i = 0; i < 64; ++i) v[size_t(i)] = 0.3f, v[size_t(64 + i)] = -0.3f, v[size_t(128 + i)] = 1e-3f, v[size_t(192 + i)] = i % 2 ? 0.7f : -0.7f;
    cases.push_back({"equal_blocks", "nf4", from_floats(v)});
  }
  {
    // Absmax a power of two: x · (1 / absmax) is exact and lands on the thresholds themselves.
    // Otherwise: the floats near threshold · absmax, where x · (1 / absmax) (bitsandbytes) and
    // x / absmax can fall on different sides.
    std::vector<float> v;
    for (float scale : {1.0f, 0.125f, 32.0f, 0x1p-100f, 0.7f, 1.3f, 0.0123f, 3e-20f}) {
      std::vector<float> vals;
      for (float x : nf4_edges())
        for (float y : around(x * scale, 8))
          if (std::fabs(y) <= scale) vals.push_back(y);
      const std::vector<float> b = blocks_with_absmax(vals, scale);
      v.insert(v.end(), b.begin(), b.end());
    }
    cases.push_back({"nf4_midpoints", "nf4", from_floats(v)});
  }
  {
    std::vector<float> v(64 * 5, 0.0f);
    const std::vector<float> edge = {1e38f, -3.3e37f, 1.0f, -1e-30f, 1e-38f, 1.4e-45f, 3e-39f, -2e-44f, 1e-40f, 0.0f};
    for (size_t b = 0; b < 5; ++b)
      for (size_t i = 0; i < 64; ++i) v[b * 64 + i] = edge[(b + i) % edge.size()] * (b == 0 ? 1.0f : 1e-30f);  // huge, then tiny and subnormal
    cases.push_back({"extremes", "nf4", from_floats(v)});
    cases.push_back({"all_huge", "nf4", Tensor::full({64 * 3}, -3.4e38)});
  }
  return cases;
}

std::vector<Case> blockwise_cases() {
  Generator gen(11);
  std::vector<Case> cases = {{"b8_normal_4096", "blockwise8", loom::randn({5000}, gen.next(5000)), 4096},
                             {"b8_normal_256", "blockwise8", loom::randn({3000}, gen.next(3000), 0.0, 1e-3), 256}};
  // Every map value, every midpoint of neighbours (as the kernel computes it) and the floats
  // next to them, in one block whose absmax is 1 (x · (1 / 1) is exact); and beyond the map's
  // lowest value (−0.99297).
  // (scaled by a non-power of two: the floats near those products, as for NF4).
  const std::vector<float> map = create_dynamic_map();
  std::vector<float> edges = {-1.0f, -0.995f, 0.999f};
  for (size_t k = 0; k < 256; ++k) {
    for (float x : around(map[k], 1)) edges.push_back(x);
    if (k < 255)
      for (float x : around((map[k] + map[k + 1]) * 0.5f, 1)) edges.push_back(x);
  }
  cases.push_back({"b8_midpoints", "blockwise8", from_floats(blocks_with_absmax(edges, 1.0f, 4096)), 4096});
  std::vector<float> near;
  for (float x : edges)
    for (float y : around(x * 0.37f, 3))
      if (std::fabs(y) <= 0.37f) near.push_back(y);
  cases.push_back({"b8_midpoints_scaled", "blockwise8", from_floats(blocks_with_absmax(near, 0.37f, 4096)), 4096});
  std::vector<float> z(700, 0.0f);
  z[650] = -2.5f;
  cases.push_back({"b8_zero_blocks", "blockwise8", from_floats(z), 256});
  return cases;
}

// Rows of a weight (the last dimension), one of them zero; ties at .5 after the scaling (rows
// whose absmax makes 127 / absmax exact).
std::vector<Case> int8_cases() {
  Generator gen(13);
  std::vector<Case> cases = {{"int8_weight", "int8", loom::randn({96, 130}, gen.next(96 * 130), 0.0, 0.02)},
                             {"int8_3d", "int8", loom::randn({3, 4, 50}, gen.next(600))},
                             {"int8_f16", "int8", ops::cast(loom::randn({7, 64}, gen.next(448)), DType::f16)}};
  std::vector<float> v(4 * 16, 0.0f);
  for (int i = 0; i < 16; ++i) {
    v[size_t(i)] = i == 0 ? 127.0f : float(i % 2 ? i : -i) * 8.0f - 0.5f;  // absmax 127: scale 1
    v[size_t(16 + i)] = i == 0 ? 63.5f : float(i) * 0.25f;                 // scale 2: 0.25 -> 0.5 -> 0
    v[size_t(48 + i)] = i == 0 ? -1e-30f : 1e-31f * float(i - 8);          // tiny
  }
  Tensor t = from_floats(v);
  cases.push_back({"int8_ties", "int8", ops::reshape(t, {4, 16})});
  return cases;
}

}  // namespace

TEST(Nf4, DynamicMapIsBitsandbytes) {
  const std::vector<float> map = create_dynamic_map();
  ASSERT_EQ(map.size(), 256u);
  EXPECT_TRUE(std::is_sorted(map.begin(), map.end()));
  EXPECT_EQ(map[127], 0.0f);
  EXPECT_EQ(map[255], 1.0f);
  EXPECT_EQ(map[0], -map[254]);  // 127 negative values mirror the positive ones; 1 has no mirror
  const std::vector<float> unsigned_map = create_dynamic_map(false);
  EXPECT_TRUE(std::is_sorted(unsigned_map.begin(), unsigned_map.end()));
  EXPECT_EQ(unsigned_map[0], 0.0f);
  EXPECT_EQ(unsigned_map[255], 1.0f);
  // bitsandbytes' own assert: an unsigned map with fewer exponent bits has the wrong count.
  EXPECT_THROW(create_dynamic_map(false, 5), Error);
  EXPECT_EQ(create_dynamic_map(true, 5).size(), 256u);

  if (const std::string missing = numpy_missing(); !missing.empty()) GTEST_SKIP() << missing;
  const Reference ref({});
  ASSERT_TRUE(ref.ok());
  expect_same(bits(map), bits(ref.read<float>("map.f32")), "dynamic map vs the numpy reference");
  if (!ref.has("torch_map.f32")) GTEST_SKIP() << LOOM_PYTHON << " has no torch: map not checked against torch.linspace";
  expect_same(bits(map), bits(ref.read<float>("torch_map.f32")), "dynamic map vs torch as bitsandbytes computes it");
}

TEST(Nf4, EqualsReferenceBitForBit) {
  if (const std::string missing = numpy_missing(); !missing.empty()) GTEST_SKIP() << missing;
  for (const std::vector<Case>& cases : {nf4_cases(), blockwise_cases(), int8_cases()}) {
    const Reference ref(cases);
    ASSERT_TRUE(ref.ok());
    for (const Case& c : cases) compare(c, ref);
  }
}

// Rules that need no reference: ties and zero blocks.
TEST(Nf4, RoundingRules) {
  const std::vector<float> map = create_dynamic_map();
  // A midpoint between map[p] (p even) and a neighbour goes to p; NaN to 0.
  for (int p : {2, 100, 128, 200, 254}) {
    EXPECT_EQ(quantize_dynamic((map[size_t(p)] + map[size_t(p + 1)]) * 0.5f, map.data()), p);
    EXPECT_EQ(quantize_dynamic((map[size_t(p - 1)] + map[size_t(p)]) * 0.5f, map.data()), p);
    EXPECT_EQ(quantize_dynamic(map[size_t(p + 1)], map.data()), p + 1);
  }
  EXPECT_EQ(quantize_dynamic(std::numeric_limits<float>::quiet_NaN(), map.data()), 0);
  EXPECT_EQ(quantize_dynamic(-1.0f, map.data()), 0);
  EXPECT_EQ(quantize_dynamic(1.0f, map.data()), 255);
  // 0.5 sits between NF4 values 0.4407 and 0.5626 (midpoint 0.5017): code 12; the whole block of
  // 64 zeros is code 0 (NF4 −1, times absmax 0).
  Tensor x = Tensor::zeros({128});
  x.data<float>()[0] = 1.0f;
  x.data<float>()[1] = 0.5f;
  const Nf4Weight q = quantize_nf4(x);
  EXPECT_EQ(q.codes.data<uint8_t>()[0], 0xFC);
  EXPECT_EQ(q.codes.data<uint8_t>()[1], 0x77);  // zeros in a block with absmax 1: NF4 0
  EXPECT_EQ(q.codes.data<uint8_t>()[32], 0x00);
}

// |x − x̂| <= max gap/2 · absmax + |absmax − absmax̂|: the NF4 values' widest gap is −1 to −0.6962
// (half: 0.1519), and the dynamic map's half gap at the top (0.9/64/2 = 0.00703, also below its
// lowest value −0.99297) bounds the double quantisation's absmax error by 0.00704 · scale.
TEST(Nf4, ErrorWithinBound) {
  Generator gen(3);
  const Tensor w = randn({256, 1024}, gen.next(256 * 1024), 0.0, 0.02);
  const Nf4Weight q = quantize_nf4(w);
  const std::vector<float> absmax_dq = nf4_block_absmax(q);
  const Tensor d = dequantize_nf4(q);
  const float *x = w.data<float>(), *y = d.data<float>();
  const float* scale = q.absmax_scale.data<float>();
  double worst = 0, sq = 0, ref_sq = 0;
  for (int64_t b = 0; b < int64_t(absmax_dq.size()); ++b) {
    float a = 0;
    for (int64_t i = b * 64; i < b * 64 + 64; ++i) a = std::max(a, std::fabs(x[i]));
    const double absmax_err = std::fabs(double(a) - absmax_dq[size_t(b)]);
    EXPECT_LE(absmax_err, 0.00704 * scale[b / 256]) << "block " << b;
    for (int64_t i = b * 64; i < b * 64 + 64; ++i) {
      const double err = std::fabs(double(x[i]) - y[i]);
      worst = std::max(worst, err / a);
      sq += err * err, ref_sq += double(x[i]) * x[i];
      EXPECT_LE(err, 0.15191 * a + absmax_err + 1e-6 * a) << "element " << i;
    }
  }
  // Measured (docs/finetuning.md): relative RMS error about 0.1, worst about 0.15 of a block's absmax.
  const double rel_rms = std::sqrt(sq / ref_sq);
  std::printf("NF4 error of N(0, 0.02) weights: relative RMS %.4f, worst %.4f of the block's absmax\n", rel_rms, worst);
  EXPECT_GT(rel_rms, 0.05);
  EXPECT_LT(rel_rms, 0.12);
  EXPECT_LT(worst, 0.16);
}

// Row-wise int8: |x − x̂| <= absmax / 254 (half a step of absmax / 127) plus float rounding.
TEST(Int8, ErrorWithinBoundAndMemory) {
  Generator gen(4);
  const Tensor w = randn({64, 300}, gen.next(64 * 300), 0.0, 0.02);
  const Int8Weight q = quantize_int8(w);
  EXPECT_EQ(q.nbytes(), size_t(64 * 300 + 64 * 4));
  const Tensor d = dequantize_int8(q);
  const float *x = w.data<float>(), *y = d.data<float>(), *absmax = q.absmax.data<float>();
  for (int64_t i = 0; i < w.numel(); ++i) ASSERT_LE(std::fabs(x[i] - y[i]), absmax[i / 300] * (0.5f / 127 + 1e-6f)) << i;
  EXPECT_THROW(quantize_int8(Tensor::deferred({4, 4})), Error);
}

TEST(Nf4, MemoryAndErrors) {
  const Nf4Weight q = quantize_nf4(Tensor::ones({4096, 64}));  // 4096 blocks of 64, 16 of 256
  EXPECT_EQ(q.nbytes(), size_t(4096 * 64 / 2 + 4096 + 16 * 4));
  EXPECT_THROW(quantize_nf4(Tensor::deferred({64})), Error);
  EXPECT_THROW(quantize_nf4(Tensor::zeros({0})), Error);
  EXPECT_THROW(quantize_nf4(Tensor::zeros({8}, DType::i64)), Error);
  Tensor bad = Tensor::ones({100});
  bad.data<float>()[70] = std::numeric_limits<float>::infinity();
  try {
    quantize_nf4(bad);
    ADD_FAILURE() << "an infinite weight was quantised";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("element 70"), std::string::npos) << e.what();
  }
  Nf4Weight wrong = q;
  wrong.shape = {4096, 65};
  EXPECT_THROW(dequantize_nf4(wrong), Error);
}
