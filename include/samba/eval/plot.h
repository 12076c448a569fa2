#pragma once
// Small SVG charts for evaluation and ablation reports: line charts (loss curves, perplexity
// against context length) and heat maps (passkey accuracy grids). Written by us so reports
// need no plotting package on the machine; any browser or image viewer shows the files.
#include <string>
#include <vector>

namespace samba::plot {

struct Series {
  std::string name;
  std::vector<double> x, y;  // same length; non-finite points are skipped
};

struct LineChart {
  std::string title, x_label, y_label;
  bool log_x = false;  // base-2 ticks (context lengths)
  bool log_y = false;  // 1-2-5 ticks (perplexities, losses)
  std::vector<double> x_ticks;  // explicit tick positions; empty = automatic
  std::vector<Series> series;
};

struct Heatmap {
  std::string title, x_label, y_label;
  std::vector<std::string> columns, rows;
  std::vector<std::vector<double>> values;  // rows x columns, 0..1; NaN = not measured
};

std::string line_chart_svg(const LineChart& chart);
std::string heatmap_svg(const Heatmap& map);

// Writes `svg` to `path` atomically.
void write_svg(const std::string& path, const std::string& svg);

// "Nice" tick positions covering [lo, hi] (linear: 1-2-5 steps; exposed for tests).
std::vector<double> linear_ticks(double lo, double hi, int target = 6);

}  // namespace samba::plot
