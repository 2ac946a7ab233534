// Token shards and the loader: llm.c's file layout and batch order, seeded shuffling, the replay mix,
// resumable position, and every kind of bad shard.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "loom/data/loader.h"
#include "loom/data/shards.h"

using namespace loom;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("loom_shards_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
  static inline int counter = 0;
};

std::vector<uint32_t> iota_tokens(size_t n, uint32_t start = 0) {
  std::vector<uint32_t> t(n);
  for (size_t i = 0; i < n; ++i) t[i] = start + uint32_t(i);
  return t;
}

}  // namespace

TEST(Shards, FileLayoutIsLlmc) {
  TempDir d;
  data::write_shard(d.file("a.bin"), {1, 2, 65535}, false);
  std::ifstream f(d.file("a.bin"), std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), {});
  ASSERT_EQ(bytes.size(), 1024u + 6u);
  const int32_t* h = reinterpret_cast<const int32_t*>(bytes.data());
  EXPECT_EQ(h[0], 20240520);
  EXPECT_EQ(h[1], 1);
  EXPECT_EQ(h[2], 3);
  const uint16_t* toks = reinterpret_cast<const uint16_t*>(bytes.data() + 1024);
  EXPECT_EQ(toks[2], 65535);
  data::TokenShard s(d.file("a.bin"));
  EXPECT_EQ(s.size(), 3);
  EXPECT_EQ(s.at(2), 65535u);
  data::write_shard(d.file("w.bin"), {70000, 5}, true);
  EXPECT_EQ(data::TokenShard(d.file("w.bin")).at(0), 70000u);
}

TEST(Loader, UnshuffledOrderIsLlmc) {
  TempDir d;
  const int64_t B = 2, T = 4;
  data::write_shard(d.file("s0.bin"), iota_tokens(20), false);  // floor(19/4) = 4 windows
  data::write_shard(d.file("s1.bin"), iota_tokens(9, 100), false);  // 2 windows
  data::DataLoader dl(d.path.string(), "data.train", B, T, false, 0, 1000);
  EXPECT_EQ(dl.sequences_per_epoch(), 6);
  for (int64_t k = 0; k < 2; ++k) {
    data::Batch b = dl.next();
    std::vector<int64_t> in = b.inputs.to_ints(), tg = b.targets.to_ints();
    for (int64_t i = 0; i < B * T; ++i) {
      EXPECT_EQ(in[size_t(i)], k * B * T + i);  // tokens [k·B·T, k·B·T + B·T + 1)
      EXPECT_EQ(tg[size_t(i)], k * B * T + i + 1);
    }
  }
  EXPECT_EQ(dl.next().inputs.to_ints()[0], 100);  // next shard
  EXPECT_EQ(dl.next().inputs.to_ints()[0], 0);    // wraps into epoch 1
  EXPECT_EQ(dl.consumed(), 8);
}

TEST(Loader, ShuffleIsASeededPermutationAndResumable) {
  TempDir d;
  data::write_shard(d.file("s.bin"), iota_tokens(1001), false);
  auto epoch_windows = [&](uint64_t seed) {
    data::DataLoader dl(d.file("s.bin"), "data.train", 2, 10, true, seed, 2000);
    std::vector<int64_t> starts;
    for (int64_t k = 0; k < dl.sequences_per_epoch() / 2; ++k) {
      std::vector<int64_t> in = dl.next().inputs.to_ints();
      starts.push_back(in[0]);
      starts.push_back(in[10]);
    }
    return starts;
  };
  std::vector<int64_t> a = epoch_windows(1), b = epoch_windows(1), c = epoch_windows(2);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(std::set<int64_t>(a.begin(), a.end()).size(), 100u);  // every window exactly once
  data::DataLoader dl(d.file("s.bin"), "data.train", 2, 10, true, 1, 2000);
  dl.next();
  const int64_t at = dl.consumed();
  std::vector<int64_t> want = dl.next().inputs.to_ints();
  data::DataLoader again(d.file("s.bin"), "data.train", 2, 10, true, 1, 2000);
  again.set_consumed(at);
  EXPECT_EQ(again.next().inputs.to_ints(), want);
}

// The position counts sequences: the rows of a global batch are the same however it is cut into
// parts and micro-batches, across epoch boundaries too (13 windows: batches straddle epochs).
TEST(Loader, PositionDoesNotDependOnTheSplit) {
  TempDir d;
  data::write_shard(d.file("s.bin"), iota_tokens(131), false);
  for (bool shuffle : {false, true}) {
    auto rows = [&](int64_t B, int64_t parts, int64_t micro, int64_t from) {  // `micro` next() calls of every part
      std::vector<int64_t> out;
      std::vector<std::unique_ptr<data::DataLoader>> dl;
      for (int64_t p = 0; p < parts; ++p) {
        dl.push_back(std::make_unique<data::DataLoader>(d.file("s.bin"), "data.train", B, 10, shuffle, 5, 200, p, parts));
        dl.back()->set_consumed(from);
      }
      for (int64_t m = 0; m < micro; ++m)
        for (auto& l : dl) {
          std::vector<int64_t> in = l->next().inputs.to_ints();
          for (int64_t i = 0; i < B; ++i) out.push_back(in[size_t(i * 10)]);
        }
      EXPECT_EQ(dl[0]->consumed(), from + B * parts * micro);
      return out;
    };
    for (int64_t from : {0, 8, 24}) {
      const std::vector<int64_t> want = rows(8, 1, 1, from);
      EXPECT_EQ(rows(4, 2, 1, from), want) << "shuffle " << shuffle << " from " << from;
      EXPECT_EQ(rows(4, 1, 2, from), want) << "shuffle " << shuffle << " from " << from;
      EXPECT_EQ(rows(1, 4, 2, from), want) << "shuffle " << shuffle << " from " << from;
    }
  }
}

TEST(Loader, RejectsBadShards) {
  TempDir d;
  data::write_shard(d.file("good.bin"), iota_tokens(100), false);
  auto expect_error = [](const std::function<void()>& fn, const std::string& needle) {
    try {
      fn();
      ADD_FAILURE() << "no error; wanted one containing " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  {
    std::fstream f(d.file("bad_magic.bin"), std::ios::out | std::ios::binary);
    std::vector<int32_t> h(256, 0);
    h[0] = 12345;
    f.write(reinterpret_cast<char*>(h.data()), 1024);
  }
  expect_error([&] { data::TokenShard s(d.file("bad_magic.bin")); }, "bad magic 12345");
  {  // 2^63 + 3 uint32 tokens: their byte count wraps around 2^64 to the 12 bytes there are
    std::fstream f(d.file("wrap.bin"), std::ios::out | std::ios::binary);
    std::vector<int32_t> h(256 + 3, 0);
    h[0] = data::kShardMagic, h[1] = 2, h[2] = 3, h[3] = INT32_MIN;
    f.write(reinterpret_cast<char*>(h.data()), 1024 + 12);
  }
  expect_error([&] { data::TokenShard s(d.file("wrap.bin")); }, "promises 9223372036854775811 tokens");
  fs::copy_file(d.file("good.bin"), d.file("trunc.bin"));
  fs::resize_file(d.file("trunc.bin"), 1024 + 150);
  expect_error([&] { data::TokenShard s(d.file("trunc.bin")); }, "truncated");
  fs::resize_file(d.file("trunc.bin"), 10);
  expect_error([&] { data::TokenShard s(d.file("trunc.bin")); }, "shorter than the 1024-byte header");
  expect_error([&] { data::TokenShard s(d.file("missing.bin")); }, "missing.bin");
  expect_error([&] { data::DataLoader dl(d.file("good.bin"), "data.train", 2, 10, false, 0, 15); dl.next(); }, "token id 15");
  expect_error([&] { data::DataLoader dl(d.file("nothing*.bin"), "data.val", 2, 10, false, 0, 50); }, "data.val: no shard files");
  expect_error([&] { data::DataLoader dl(d.file("good.bin"), "data.train", 8, 64, false, 0, 500); }, "fewer than one batch");
  expect_error(  // a position read from train_state.json, just short of 2^63: the batch overflowed it
      [&] {
        data::DataLoader dl(d.file("good.bin"), "data.train", 2, 10, true, 0, 500);
        dl.set_consumed(INT64_MAX - 1);
        dl.next();
      },
      "position 9223372036854775806 leaves no room for 2 more sequences");
}

TEST(Loader, PartsSplitTheSameGlobalBatch) {
  TempDir d;
  data::write_shard(d.file("s.bin"), iota_tokens(3001), false);
  for (bool shuffle : {false, true}) {
    data::DataLoader whole(d.file("s.bin"), "data.train", 4, 10, shuffle, 9, 4000);
    data::DataLoader p0(d.file("s.bin"), "data.train", 2, 10, shuffle, 9, 4000, 0, 2), p1(d.file("s.bin"), "data.train", 2, 10, shuffle, 9, 4000, 1, 2);
    for (int k = 0; k < 5; ++k) {
      std::vector<int64_t> w = whole.next().inputs.to_ints(), a = p0.next().inputs.to_ints(), b = p1.next().inputs.to_ints();
      a.insert(a.end(), b.begin(), b.end());
      EXPECT_EQ(a, w) << "batch " << k << " shuffle " << shuffle;
    }
  }
}

// Replay: sequence k of the stream is replayed when ⌊(k+1)f⌋ > ⌊kf⌋, whatever the split.
TEST(DataLoaderReplay, MixesAtTheFractionWhateverTheSplit) {
  TempDir d;
  std::vector<uint32_t> main(10 * 4 + 1), replay(10 * 4 + 1);
  for (size_t i = 0; i < main.size(); ++i) main[i] = uint32_t(i), replay[i] = uint32_t(1000 + i);
  data::write_shard(d.file("main.bin"), main, false);
  data::write_shard(d.file("replay.bin"), replay, false);
  auto first_tokens = [&](int64_t B, int64_t parts, bool shuffle) {
    std::vector<int64_t> firsts;
    std::vector<std::unique_ptr<data::DataLoader>> dl;
    for (int64_t p = 0; p < parts; ++p)
      dl.push_back(std::make_unique<data::DataLoader>(data::shard_windows(d.file("main.bin"), "data.train", 4, 2000), "data.train", B, shuffle,
                                                      7, p, parts, data::Replay{data::shard_windows(d.file("replay.bin"), "data.replay", 4, 2000), 0.25}));
    for (int step = 0; step < 24 / (B * parts); ++step)
      for (auto& l : dl) {
        const std::vector<int64_t> ids = l->next().inputs.to_ints();
        for (int64_t i = 0; i < B; ++i) firsts.push_back(ids[size_t(i * 4)]);
      }
    return firsts;
  };
  const std::vector<int64_t> seq = first_tokens(4, 1, false);
  // Every fourth sequence (k = 3, 7, ...) is the next replay window; the others the next main windows.
  std::vector<int64_t> want;
  for (int64_t k = 0, r = 0, m = 0; k < 24; ++k) want.push_back((k + 1) % 4 == 0 ? 1000 + 4 * (r++ % 10) : 4 * (m++ % 10));
  EXPECT_EQ(seq, want);
  EXPECT_EQ(first_tokens(2, 2, false), seq);
  EXPECT_EQ(first_tokens(3, 2, true), first_tokens(6, 1, true));
}
