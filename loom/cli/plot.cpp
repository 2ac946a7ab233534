// `loom plot METRICS.jsonl --output loss.svg [--title TEXT]`: draws train/val loss and the
// learning rate of a `loom train` metrics file as an SVG, written atomically.
#include <filesystem>

#include "loom/cli/commands.h"
#include "loom/io/file_util.h"
#include "loom/train/plot.h"

namespace loom::cli {

Command add_plot(CLI::App& app) {
  auto* cmd = app.add_subcommand("plot", "draw train/val loss and the learning rate of a metrics JSONL file as an SVG");
  struct Args {
    std::string metrics, output, title;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("metrics", a->metrics, "the metrics JSONL that `loom train` writes (logging.metrics)")->required();
  cmd->add_option("--output", a->output, "SVG file to write")->required();
  cmd->add_option("--title", a->title, "title above the plot (default: the metrics file's name)");
  return {cmd, [a](const std::shared_ptr<dist::Group>&) {
            const std::vector<train::MetricsRecord> records = train::read_metrics(a->metrics);
            const std::string title = a->title.empty() ? std::filesystem::path(a->metrics).filename().string() : a->title;
            io::AtomicFile out(a->output);
            out.write(train::plot_metrics_svg(records, title));
            out.commit();
            fmt::print("plotted {} steps ({} to {}) -> {}\n", records.size(), records.front().step, records.back().step, a->output);
            return 0;
          }};
}

}  // namespace loom::cli
