// Training curves from the metrics JSONL that `loom train` writes (`logging.metrics`): the
// records read back (a resumed run appends, so a step may repeat and the later record wins),
// and a self-contained SVG of train/val loss and the learning rate against step.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace loom::train {

// One step of a metrics file: the fields `loom plot` draws.
struct MetricsRecord {
  int64_t step = 0;
  double loss = 0;
  std::optional<double> lr;        // absent in files not written by `loom train`
  std::optional<double> val_loss;  // eval steps only
};

// Reads a metrics JSONL: one record per step, in step order. Throws loom::Error naming the
// file and line for a line that is not a JSON object, lacks a numeric `step`/`loss` or has a
// non-numeric `lr`/`val_loss`, and for a file without records.
std::vector<MetricsRecord> read_metrics(const std::string& path);

// The SVG document (title on top, loss on the left axis, lr on the right axis, a legend). The
// polylines carry ids `train-loss`, `val-loss` and `lr`, each with points in step order.
// records must be non-empty and sorted by step.
std::string plot_metrics_svg(const std::vector<MetricsRecord>& records, const std::string& title);

}  // namespace loom::train
