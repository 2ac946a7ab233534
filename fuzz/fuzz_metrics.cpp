// Fuzzes `loom plot`: the metrics JSONL reader, then the SVG drawn from what it accepted (axes
// and ticks come from the file's numbers).
#include "fuzz/harness.h"
#include "loom/train/plot.h"

void loom::fuzz::one_input(std::string_view input) {
  const std::vector<train::MetricsRecord> records = train::read_metrics(write_file("metrics.jsonl", input));
  must_accept([&] { return train::plot_metrics_svg(records, "fuzz"); });
}
