// Pipeline schedules, checked by running every stage's action list against the others in a
// simulation where each forward and backward takes one tick and may start once what it needs
// is done (the previous chunk's forward, the next chunk's backward): every schedule completes
// (no stage waits forever), runs each micro-batch's forward and backward once per chunk, and
// idles as theory says — GPipe and 1F1B (p−1)/(m+p−1) of the time, interleaved less. Also the
// layer split.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "loom/parallel/pipeline.h"

using namespace loom;
using parallel::PipelineAction;

namespace {

// Runs the schedules of all stages; returns the ticks until the last action finishes.
int simulate(const std::string& schedule, int stages, int chunks, int micro) {
  std::vector<std::vector<PipelineAction>> plan;
  for (int s = 0; s < stages; ++s) plan.push_back(parallel::pipeline_schedule(schedule, stages, s, chunks, micro));
  const int n = stages * chunks;
  // Finish tick of (forward?, global chunk, micro).
  std::map<std::tuple<bool, int, int>, int> done;
  std::vector<size_t> next(size_t(stages), 0);
  int tick = 0;
  for (size_t left = n * micro * 2; left > 0; ++tick) {
    EXPECT_LT(tick, 100000) << schedule << ": stuck";
    if (tick >= 100000) return -1;
    std::vector<std::tuple<bool, int, int>> finished;
    for (int s = 0; s < stages; ++s) {
      if (next[size_t(s)] == plan[size_t(s)].size()) continue;
      const PipelineAction& a = plan[size_t(s)][next[size_t(s)]];
      const int k = a.chunk * stages + s;
      auto ready = [&](bool fwd, int chunk) {
        auto it = done.find({fwd, chunk, a.micro});
        return it != done.end() && it->second < tick;
      };
      const bool ok = a.forward ? (k == 0 || ready(true, k - 1)) : (k == n - 1 ? ready(true, k) : ready(false, k + 1));
      if (!ok) continue;
      finished.emplace_back(a.forward, k, a.micro);
      ++next[size_t(s)];
      --left;
    }
    for (const auto& f : finished) EXPECT_TRUE(done.emplace(f, tick).second) << schedule << ": an action twice";
  }
  return tick;
}

TEST(PipelineSchedule, EveryActionOnceForwardFirst) {
  for (const auto& [schedule, chunks] : {std::pair{"gpipe", 1}, {"1f1b", 1}, {"interleaved", 2}, {"interleaved", 3}})
    for (int stages : {1, 2, 4})
      for (int micro : {4, 8}) {
        for (int s = 0; s < stages; ++s) {
          std::set<std::tuple<bool, int, int>> seen;
          for (const PipelineAction& a : parallel::pipeline_schedule(schedule, stages, s, chunks, micro)) {
            EXPECT_TRUE(seen.insert({a.forward, a.chunk, a.micro}).second);
            if (!a.forward) {
              EXPECT_TRUE(seen.count({true, a.chunk, a.micro})) << schedule << ": backward before forward";
            }
          }
          EXPECT_EQ(seen.size(), size_t(2 * chunks * micro)) << schedule;
        }
      }
}

TEST(PipelineSchedule, BubbleAsTheorySays) {
  for (int p : {2, 4})
    for (int m : {4, 8, 16}) {
      const double theory = double(p - 1) / double(m + p - 1);
      for (const char* schedule : {"gpipe", "1f1b"}) {
        const int ticks = simulate(schedule, p, 1, m);
        EXPECT_NEAR(1.0 - double(2 * m) / ticks, theory, 1e-12) << schedule << " p " << p << " m " << m;
      }
      for (int v : {2, 4}) {
        const int ticks = simulate("interleaved", p, v, m);
        const double bubble = 1.0 - double(2 * m * v) / ticks;
        EXPECT_LT(bubble, theory) << "interleaved p " << p << " m " << m << " v " << v;
        // Megatron's estimate: the bubble shrinks by v, to (p−1)/(v·m + p − 1) of the time.
        EXPECT_NEAR(bubble, double(p - 1) / double(v * m + p - 1), 1e-12) << "interleaved p " << p << " m " << m << " v " << v;
      }
    }
}

TEST(PipelineSchedule, BadSizesAreNamed) {
  EXPECT_THROW(parallel::pipeline_schedule("1f1b", 2, 0, 2, 4), Error);
  EXPECT_THROW(parallel::pipeline_schedule("interleaved", 2, 0, 1, 4), Error);
  EXPECT_THROW(parallel::pipeline_schedule("interleaved", 4, 0, 2, 6), Error);
  EXPECT_THROW(parallel::pipeline_schedule("zigzag", 2, 0, 1, 4), Error);
}

TEST(PipelineSchedule, LayerSplit) {
  EXPECT_EQ(parallel::pipeline_chunk_starts(8, 2, 1, {}), (std::vector<size_t>{0, 4, 8}));
  EXPECT_EQ(parallel::pipeline_chunk_starts(7, 2, 1, {}), (std::vector<size_t>{0, 4, 7}));
  EXPECT_EQ(parallel::pipeline_chunk_starts(8, 2, 2, {}), (std::vector<size_t>{0, 2, 4, 6, 8}));
  EXPECT_EQ(parallel::pipeline_chunk_starts(8, 2, 1, {3, 5}), (std::vector<size_t>{0, 3, 8}));
  EXPECT_THROW(parallel::pipeline_chunk_starts(8, 2, 1, {3, 4}), Error);
  EXPECT_THROW(parallel::pipeline_chunk_starts(2, 4, 1, {}), Error);
  EXPECT_THROW(parallel::pipeline_chunk_starts(6, 2, 2, {}), Error);
}

}  // namespace
