// Core: dtypes and conversions, allocator reuse and stats, views sharing storage, Philox.
#include <gtest/gtest.h>

#include <cmath>

#include "loom/core/allocator.h"
#include "loom/core/rng.h"
#include "loom/core/tensor.h"
#include "loom/ops/shape.h"

using namespace loom;

TEST(DType, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f).bits, 0x3f80);
  // 1 + 2^-8 is halfway between two bf16 values: ties go to the even mantissa (1.0).
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 1.0f / 256)), 1.0f);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 3.0f / 256)), 1.0f + 4.0f / 256);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
  EXPECT_TRUE(std::isinf(bf16_to_f32(f32_to_bf16(INFINITY))));
}

TEST(DType, F16RoundTrip) {
  EXPECT_EQ(f16_to_f32(f32_to_f16(0.5f)), 0.5f);
  EXPECT_EQ(f32_to_f16(1.0f).bits, 0x3c00);
  EXPECT_EQ(f16_to_f32(f32_to_f16(65504.0f)), 65504.0f);
  EXPECT_TRUE(std::isinf(f16_to_f32(f32_to_f16(1e6f))));
}

TEST(Allocator, ReusesFreedBlocksAndTracksPeak) {
  auto& a = CpuAllocator::instance();
  a.empty_cache();
  size_t base = a.stats().current_bytes;
  a.reset_peak();
  void* first;
  {
    Tensor t = Tensor::empty({1000, 100});
    first = t.raw_data();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(first) % 64, 0u);
    EXPECT_GE(a.stats().current_bytes, base + 400000);
  }
  EXPECT_EQ(a.stats().current_bytes, base);
  EXPECT_GE(a.stats().cached_bytes, 400000u);
  Tensor again = Tensor::empty({1000, 100});
  EXPECT_EQ(again.raw_data(), first);
  EXPECT_GE(a.stats().peak_bytes, base + 400000);
}

// ZeRO-3 frees a gathered parameter's memory while its tensors and views live on.
TEST(Storage, ReleaseFreesMemoryAndKeepsViewsValid) {
  auto& a = CpuAllocator::instance();
  Tensor t = Tensor::full({1000, 100}, 2.0);
  Tensor view = ops::narrow(t, 0, 10, 5);
  const size_t held = a.stats().current_bytes;
  t.storage()->release();
  EXPECT_FALSE(t.storage()->resident());
  EXPECT_LE(a.stats().current_bytes, held - 400000);
  t.storage()->restore();
  EXPECT_TRUE(view.storage()->resident());
  EXPECT_EQ(a.stats().current_bytes, held);
  view.data<float>()[0] = 5.0f;  // the view reaches the new memory
  EXPECT_EQ(t.data<float>()[1000], 5.0f);
  auto wrapped = Storage::wrap(t.raw_data(), 4, [] {});
  EXPECT_THROW(wrapped->release(), Error);
}

TEST(Tensor, ViewsShareStorage) {
  Tensor x = Tensor::from_vector({0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor t = ops::transpose(x, 0, 1);
  EXPECT_EQ(t.storage(), x.storage());
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(t.to_vector(), (std::vector<double>{0, 3, 1, 4, 2, 5}));
  Tensor s = ops::slice(x, 1, 1, 3);
  s.data<float>()[0] = 42;  // element (0, 1) of x
  EXPECT_EQ(x.to_vector()[1], 42);
  Tensor c = ops::contiguous(t);
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_NE(c.storage(), x.storage());
}

TEST(Tensor, RejectsBadShapesAndDtypes) {
  EXPECT_THROW(Tensor::empty({1, 2, 3, 4, 5, 6, 7, 8, 9}), Error);
  EXPECT_THROW(Tensor::from_vector({1, 2, 3}, {2, 2}), Error);
  Tensor x = Tensor::zeros({2});
  EXPECT_THROW(x.data<double>(), Error);
  EXPECT_THROW(ops::reshape(x, {3}), Error);
}

TEST(Rng, PhiloxMatchesRandom123KnownAnswers) {
  // Known-answer vectors from the Random123 distribution (kat_vectors, philox4x32_10).
  auto z = philox4x32({0, 0, 0, 0}, {0, 0});
  EXPECT_EQ(z, (std::array<uint32_t, 4>{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}));
  auto f = philox4x32({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu});
  EXPECT_EQ(f, (std::array<uint32_t, 4>{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}));
}

TEST(Rng, DrawsDependOnlyOnSeedAndOffset) {
  Tensor whole = randn({1000}, {7, 0});
  Tensor tail = randn({500}, {7, 500});
  std::vector<double> w = whole.to_vector(), t = tail.to_vector();
  for (size_t i = 0; i < 500; ++i) EXPECT_EQ(w[500 + i], t[i]);
  double mean = 0, var = 0;
  for (double v : w) mean += v / 1000;
  for (double v : w) var += (v - mean) * (v - mean) / 1000;
  EXPECT_NEAR(mean, 0, 0.1);
  EXPECT_NEAR(var, 1, 0.15);
  Generator g(3);
  RngKey a = g.next(10), b = g.next(5);
  EXPECT_EQ(a.offset, 0u);
  EXPECT_EQ(b.offset, 10u);
}
