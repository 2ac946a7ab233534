// `loom plot` end to end: a real training run's metrics (with a resumed part that repeats steps)
// become an SVG that Python's XML parser reads back with one point per step in step order; bad
// metrics files give one error line naming the file and line, and write nothing.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "cli_testing.h"

using namespace loom::testing;

namespace {

using Points = std::vector<std::vector<double>>;

// The SVG as Python's xml.etree sees it (tests/cli/svg_summary.py).
nlohmann::json svg_summary(const std::string& svg) {
  const std::string cmd = std::string("'") + LOOM_PYTHON + "' '" + LOOM_SOURCE_DIR + "/tests/cli/svg_summary.py' '" + svg + "' 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  EXPECT_EQ(::pclose(p), 0) << out;
  return nlohmann::json::parse(out, nullptr, false);
}

void expect_x_increasing(const Points& pts) {
  for (size_t i = 1; i < pts.size(); ++i) EXPECT_GT(pts[i][0], pts[i - 1][0]) << "point " << i;
}

struct PlotCli : ::testing::Test {
  ScratchDir d;
  void write(const std::string& name, const std::string& text) { std::ofstream(d / name, std::ios::binary) << text; }
  void expect_error(const std::string& metrics, std::initializer_list<std::string> needles) {
    const std::string args = "plot " + metrics + " --output " + (d / "bad.svg");
    expect_one_error(run_loom(args), needles, args);
    EXPECT_FALSE(fs::exists(d / "bad.svg"));
  }
};

}  // namespace

TEST_F(PlotCli, PlotsARealRunWithOnePointPerStep) {
  write_tokens(d / "train.bin", 20000, 16, 1);
  write_tokens(d / "val.bin", 2000, 16, 2);
  const std::string run = "train --model.preset=gpt2-tiny --data.train=" + (d / "train.bin") + " --data.val=" + (d / "val.bin") +
                          " --training.steps=12 --training.batch_size=2 --training.seq_len=16 --training.threads=1 --optimizer.warmup_steps=3" +
                          " --eval.every=4 --eval.batches=2 --checkpoint.dir=" + (d / "ck") + " --checkpoint.every=4 --logging.metrics=" + (d / "m.jsonl");
  ASSERT_EQ(run_loom(run).code, 0);
  // Resume from step 8 again: steps 9-12 are appended a second time, and must be drawn once.
  fs::remove_all(d / "ck/step_00000012");
  RunResult resumed = run_loom(run + " --resume");
  ASSERT_EQ(resumed.code, 0) << resumed.out;
  const std::string lines = read_file(d / "m.jsonl");
  ASSERT_EQ(std::count(lines.begin(), lines.end(), '\n'), 16);

  RunResult r = run_loom("plot " + (d / "m.jsonl") + " --output " + (d / "loss.svg") + " --title 'demo <run> & co'");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("plotted 12 steps"), std::string::npos) << r.out;
  const nlohmann::json s = svg_summary(d / "loss.svg");
  ASSERT_TRUE(s.is_object()) << read_file(d / "loss.svg");
  EXPECT_EQ(s["root"], "{http://www.w3.org/2000/svg}svg");
  const auto train = s["polylines"]["train-loss"].get<Points>();
  const auto val = s["polylines"]["val-loss"].get<Points>();
  const auto lr = s["polylines"]["lr"].get<Points>();
  EXPECT_EQ(train.size(), 12u);
  EXPECT_EQ(val.size(), 3u);  // steps 4, 8, 12
  EXPECT_EQ(lr.size(), 12u);
  expect_x_increasing(train);
  expect_x_increasing(val);
  for (size_t i = 0; i < val.size(); ++i) EXPECT_DOUBLE_EQ(val[i][0], train[4 * i + 3][0]) << "val point " << i << " is not at its step";
  EXPECT_GT(lr[0][1], lr[2][1]) << "warmup: lr rises, so its y falls";
  const auto texts = s["texts"].get<std::vector<std::string>>();
  for (const char* t : {"demo <run> & co", "step", "loss", "learning rate", "train loss", "val loss"})
    EXPECT_NE(std::find(texts.begin(), texts.end(), t), texts.end()) << "no text '" << t << "'";
}

TEST_F(PlotCli, TheLaterRecordOfARepeatedStepWins) {
  write("m.jsonl", "{\"step\": 1, \"loss\": 3}\n{\"step\": 2, \"loss\": 2}\n{\"step\": 3, \"loss\": 1}\n\n{\"step\": 2, \"loss\": 5}\n");
  ASSERT_EQ(run_loom("plot " + (d / "m.jsonl") + " --output " + (d / "p.svg")).code, 0);
  const nlohmann::json s = svg_summary(d / "p.svg");
  const auto train = s["polylines"]["train-loss"].get<Points>();
  ASSERT_EQ(train.size(), 3u);
  expect_x_increasing(train);
  EXPECT_LT(train[1][1], train[0][1]) << "step 2's loss is 5 (the later record), the highest: the smallest y";
  EXPECT_FALSE(s["polylines"].contains("val-loss"));
  EXPECT_FALSE(s["polylines"].contains("lr"));
}

TEST_F(PlotCli, BadInputIsOneErrorAndNoFile) {
  expect_error(d / "missing.jsonl", {"missing.jsonl"});
  write("empty.jsonl", "");
  expect_error(d / "empty.jsonl", {"empty.jsonl", "no metrics records"});
  write("garbled.jsonl", "{\"step\": 1, \"loss\": 3}\n{\"step\": 2, \"lo\n");
  expect_error(d / "garbled.jsonl", {"garbled.jsonl line 2", "invalid JSON"});
  write("nostep.jsonl", "{\"step\": 1, \"loss\": 3}\n{\"step\": 2, \"loss\": 2}\n{\"loss\": 1}\n");
  expect_error(d / "nostep.jsonl", {"nostep.jsonl line 3", "no 'step'"});
  write("noloss.jsonl", "{\"step\": 1, \"lr\": 0.1}\n");
  expect_error(d / "noloss.jsonl", {"noloss.jsonl line 1", "no 'loss'"});
  write("textloss.jsonl", "{\"step\": 1, \"loss\": \"high\"}\n");
  expect_error(d / "textloss.jsonl", {"textloss.jsonl line 1", "'loss'", "\"high\""});
  write("array.jsonl", "[1, 2]\n");
  expect_error(d / "array.jsonl", {"array.jsonl line 1", "object"});
  // A failed plot leaves an existing SVG as it was.
  write("good.svg", "<svg/>");
  ASSERT_EQ(run_loom("plot " + (d / "empty.jsonl") + " --output " + (d / "good.svg")).code, 2);
  EXPECT_EQ(read_file(d / "good.svg"), "<svg/>");
}
