// Reads `loom train` metrics JSONL and draws it as hand-written SVG: train loss (line), val loss
// (line with markers) on the left axis, learning rate (dashed) on the right axis.
#include "loom/train/plot.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

#include "loom/core/error.h"
#include "loom/io/file_util.h"

namespace loom::train {

namespace {

std::optional<double> optional_number(const nlohmann::json& rec, const char* key, const std::string& where) {
  if (!rec.contains(key)) return std::nullopt;
  LOOM_CHECK(rec[key].is_number(), "{}: '{}' is {}, not a number", where, key, rec[key].dump());
  return rec[key].get<double>();
}

MetricsRecord parse_record(const std::string& line, const std::string& where) {
  const nlohmann::json rec = io::parse_json(line, where);
  LOOM_CHECK(rec.is_object(), "{}: expected a JSON object, got {}", where, rec.type_name());
  for (const char* key : {"step", "loss"}) LOOM_CHECK(rec.contains(key), "{}: the record has no '{}'", where, key);
  LOOM_CHECK(rec["step"].is_number_integer(), "{}: 'step' is {}, not an integer", where, rec["step"].dump());
  MetricsRecord r;
  r.step = rec["step"].get<int64_t>();
  r.loss = *optional_number(rec, "loss", where);
  r.lr = optional_number(rec, "lr", where);
  r.val_loss = optional_number(rec, "val_loss", where);
  return r;
}

// A value range and the evenly spaced round values (1, 2 or 5 × 10^k apart) that label it;
// the range is widened to the outer ticks so the curves end inside the axes.
struct Axis {
  double lo, hi;
  std::vector<double> ticks;
};

Axis nice_axis(double lo, double hi, int target_ticks) {
  if (!(hi > lo)) hi = lo + (lo == 0 ? 1.0 : std::abs(lo) * 0.1);
  const double raw = (hi - lo) / target_ticks;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double frac = raw / mag;
  const double step = (frac <= 1 ? 1 : frac <= 2 ? 2 : frac <= 5 ? 5 : 10) * mag;
  Axis a{std::floor(lo / step) * step, std::ceil(hi / step) * step, {}};
  // Tick k is lo + k·step, counted, not summed: a sum stalls where step is below the values'
  // precision (steps near 1e17), and there are never more than target_ticks + 3 ticks.
  for (int k = 0; k <= target_ticks + 2; ++k) {
    const double t = a.lo + k * step;
    if (!(t <= a.hi + step * 1e-6)) break;
    a.ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
  }
  return a;
}

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// The drawing area in SVG units; maps data values to pixels.
struct Frame {
  static constexpr double kWidth = 860, kHeight = 500, kLeft = 80, kRight = 780, kTop = 60, kBottom = 430;
  Axis x, left, right;
  double px(double v) const { return kLeft + (v - x.lo) / (x.hi - x.lo) * (kRight - kLeft); }
  double py(const Axis& a, double v) const { return kBottom - (v - a.lo) / (a.hi - a.lo) * (kBottom - kTop); }
};

void polyline(std::ostringstream& svg, const char* id, const std::vector<std::pair<double, double>>& pts, const char* style) {
  svg << fmt::format(R"(<polyline id="{}" fill="none" {} points=")", id, style);
  for (size_t i = 0; i < pts.size(); ++i) svg << fmt::format("{}{:.2f},{:.2f}", i ? " " : "", pts[i].first, pts[i].second);
  svg << "\"/>\n";
}

void axes(std::ostringstream& svg, const Frame& f, bool has_lr) {
  svg << R"(<g font-size="12" fill="#333">)" << "\n";
  for (double t : f.left.ticks) {
    const double y = f.py(f.left, t);
    svg << fmt::format(R"(<line x1="{}" y1="{:.2f}" x2="{}" y2="{:.2f}" stroke="#e4e4e4"/>)", Frame::kLeft, y, Frame::kRight, y) << "\n";
    svg << fmt::format(R"(<text x="{}" y="{:.2f}" text-anchor="end" dominant-baseline="middle">{:.6g}</text>)", Frame::kLeft - 6, y, t) << "\n";
  }
  for (double t : f.x.ticks)
    svg << fmt::format(R"(<text x="{:.2f}" y="{}" text-anchor="middle">{:.6g}</text>)", f.px(t), Frame::kBottom + 18, t) << "\n";
  if (has_lr)
    for (double t : f.right.ticks)
      svg << fmt::format(R"(<text x="{}" y="{:.2f}" dominant-baseline="middle">{:.3g}</text>)", Frame::kRight + 6, f.py(f.right, t), t) << "\n";
  svg << fmt::format(R"(<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#333"/>)", Frame::kLeft, Frame::kTop,
                     Frame::kRight - Frame::kLeft, Frame::kBottom - Frame::kTop)
      << "\n";
  const double mid_y = (Frame::kTop + Frame::kBottom) / 2;
  svg << fmt::format(R"(<text x="{}" y="{}" text-anchor="middle" font-size="14">step</text>)", (Frame::kLeft + Frame::kRight) / 2,
                     Frame::kBottom + 42)
      << "\n";
  svg << fmt::format(R"~(<text x="22" y="{0}" text-anchor="middle" font-size="14" transform="rotate(-90 22 {0})">loss</text>)~", mid_y) << "\n";
  if (has_lr)
    svg << fmt::format(R"~(<text x="{0}" y="{1}" text-anchor="middle" font-size="14" transform="rotate(90 {0} {1})">learning rate</text>)~",
                       Frame::kWidth - 18, mid_y)
        << "\n";
  svg << "</g>\n";
}

struct Series {
  const char* id;
  const char* label;
  const char* style;
};
constexpr Series kTrain{"train-loss", "train loss", R"(stroke="#1f77b4" stroke-width="1.5")"};
constexpr Series kVal{"val-loss", "val loss", R"(stroke="#d62728" stroke-width="2")"};
constexpr Series kLr{"lr", "learning rate (right axis)", R"(stroke="#7f7f7f" stroke-width="1.2" stroke-dasharray="6 4")"};

void legend(std::ostringstream& svg, const std::vector<Series>& shown) {
  const double x = Frame::kRight - 220, y = Frame::kTop + 10;
  svg << fmt::format(R"(<g id="legend" font-size="12"><rect x="{}" y="{}" width="210" height="{}" fill="white" fill-opacity="0.85" stroke="#999"/>)",
                     x, y, 8 + 20 * shown.size())
      << "\n";
  for (size_t i = 0; i < shown.size(); ++i) {
    const double ly = y + 18 + 20 * double(i);
    svg << fmt::format(R"(<line x1="{}" y1="{}" x2="{}" y2="{}" {}/>)", x + 10, ly, x + 40, ly, shown[i].style) << "\n";
    svg << fmt::format(R"(<text x="{}" y="{}" dominant-baseline="middle">{}</text>)", x + 48, ly, shown[i].label) << "\n";
  }
  svg << "</g>\n";
}

}  // namespace

std::vector<MetricsRecord> read_metrics(const std::string& path) {
  std::istringstream in(io::read_text_file(path));
  std::map<int64_t, MetricsRecord> by_step;  // a resumed run's repeated step replaces the earlier record
  int64_t n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    MetricsRecord r = parse_record(line, fmt::format("{} line {}", path, n));
    by_step[r.step] = r;
  }
  LOOM_CHECK(!by_step.empty(), "{}: no metrics records in the file", path);
  std::vector<MetricsRecord> out;
  for (auto& [step, r] : by_step) out.push_back(r);
  return out;
}

std::string plot_metrics_svg(const std::vector<MetricsRecord>& records, const std::string& title) {
  LOOM_CHECK(!records.empty(), "plot: no metrics records");
  double lo = records[0].loss, hi = lo, lr_max = 0;
  bool has_lr = false, has_val = false;
  for (const MetricsRecord& r : records) {
    for (std::optional<double> v : {std::optional<double>(r.loss), r.val_loss})
      if (v) lo = std::min(lo, *v), hi = std::max(hi, *v);
    has_lr = has_lr || r.lr.has_value();
    has_val = has_val || r.val_loss.has_value();
    if (r.lr) lr_max = std::max(lr_max, *r.lr);
  }
  const Frame f{nice_axis(double(records.front().step), double(records.back().step), 8), nice_axis(lo, hi, 6), nice_axis(0, lr_max, 6)};
  std::vector<std::pair<double, double>> train, val, lr;
  for (const MetricsRecord& r : records) {
    const double x = f.px(double(r.step));
    train.emplace_back(x, f.py(f.left, r.loss));
    if (r.val_loss) val.emplace_back(x, f.py(f.left, *r.val_loss));
    if (r.lr) lr.emplace_back(x, f.py(f.right, *r.lr));
  }
  std::ostringstream svg;
  svg << fmt::format(R"(<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{0}" height="{1}" viewBox="0 0 {0} {1}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text id="title" x="{2}" y="32" text-anchor="middle" font-size="18">{3}</text>
)",
                     Frame::kWidth, Frame::kHeight, Frame::kWidth / 2, xml_escape(title));
  axes(svg, f, has_lr);
  std::vector<Series> shown{kTrain};
  if (has_lr) polyline(svg, kLr.id, lr, kLr.style);
  polyline(svg, kTrain.id, train, kTrain.style);
  if (has_val) {
    polyline(svg, kVal.id, val, kVal.style);
    svg << R"(<g id="val-markers" fill="#d62728">)";
    for (const auto& [x, y] : val) svg << fmt::format(R"(<circle cx="{:.2f}" cy="{:.2f}" r="3"/>)", x, y);
    svg << "</g>\n";
    shown.push_back(kVal);
  }
  if (has_lr) shown.push_back(kLr);
  legend(svg, shown);
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace loom::train
