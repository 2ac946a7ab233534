// The metrics plot's axes for numbers that a real run does not write but a metrics file can hold.
#include <gtest/gtest.h>

#include "loom/train/plot.h"

using namespace loom;

TEST(Plot, StepsBeyondDoublePrecisionStillGetTicks) {
  // Steps 1e17 and 1e17 + 16 give ticks 2 apart, below a double's precision there: adding the
  // tick step to the last tick never reached the end (`loom plot` hung).
  const std::string svg = train::plot_metrics_svg({{100'000'000'000'000'000, 1.0, {}, {}}, {100'000'000'000'000'016, 2.0, {}, {}}}, "t");
  EXPECT_NE(svg.find(">1e+17</text>"), std::string::npos) << svg;
}
