#include "samba/eval/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

#include "samba/core/error.h"
#include "samba/io/files.h"

namespace samba::plot {

namespace {

constexpr double kWidth = 760, kHeight = 460;
constexpr double kLeft = 78, kRight = 190, kTop = 44, kBottom = 58;  // margins; legend on the right

// Distinguishable on white, colour-blind friendly first (Okabe-Ito), then more.
const char* const kPalette[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9",
                                "#000000", "#F0E442", "#7F3C8D", "#3969AC", "#80BA5A", "#A5AA99"};

std::string escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += ch;
    }
  }
  return out;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

// Tick label: integers without decimals, otherwise up to 3 significant digits.
std::string label(double v) {
  char buf[32];
  if (std::fabs(v - std::round(v)) < 1e-9 * std::max(1.0, std::fabs(v)))
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else
    std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

void text(std::ostringstream& o, double x, double y, const std::string& s, const char* anchor = "middle",
          int size = 12, const char* extra = "") {
  o << "<text x=\"" << num(x) << "\" y=\"" << num(y) << "\" font-size=\"" << size << "\" text-anchor=\"" << anchor
    << "\" " << extra << ">" << escape(s) << "</text>\n";
}

struct Axis {
  double lo, hi;
  bool log;
  double map(double v, double p0, double p1) const {
    const double a = log ? std::log(lo) : lo, b = log ? std::log(hi) : hi, t = log ? std::log(v) : v;
    return p0 + (t - a) / (b - a) * (p1 - p0);
  }
};

// Data range of the finite (and, for log axes, positive) values, padded when degenerate.
Axis make_axis(const std::vector<double>& values, bool log) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (double v : values)
    if (std::isfinite(v) && (!log || v > 0)) lo = std::min(lo, v), hi = std::max(hi, v);
  if (!std::isfinite(lo)) lo = log ? 1 : 0, hi = log ? 10 : 1;
  if (hi <= lo) {
    if (log)
      lo /= 2, hi *= 2;
    else
      lo -= 0.5 * std::max(1.0, std::fabs(lo)), hi += 0.5 * std::max(1.0, std::fabs(hi));
  }
  return {lo, hi, log};
}

std::vector<double> log_ticks(const Axis& a, bool base2) {
  std::vector<double> t;
  if (base2) {
    for (double v = std::pow(2.0, std::floor(std::log2(a.lo))); v <= a.hi * 1.0001; v *= 2)
      if (v >= a.lo * 0.9999) t.push_back(v);
  } else {
    for (double decade = std::pow(10.0, std::floor(std::log10(a.lo))); decade <= a.hi; decade *= 10)
      for (double m : {1.0, 2.0, 5.0})
        if (m * decade >= a.lo * 0.9999 && m * decade <= a.hi * 1.0001) t.push_back(m * decade);
    if (t.size() < 3) {  // a narrow range: fall back to linear steps inside it
      t = linear_ticks(a.lo, a.hi);
    }
  }
  return t;
}

}  // namespace

std::vector<double> linear_ticks(double lo, double hi, int target) {
  check(hi > lo && target > 0, "linear_ticks needs hi > lo");
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> t;
  for (double v = std::ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) t.push_back(std::fabs(v) < 1e-12 * step ? 0 : v);
  return t;
}

std::string line_chart_svg(const LineChart& c) {
  std::vector<double> xs, ys;
  for (const auto& s : c.series) {
    check(s.x.size() == s.y.size(), "plot series '", s.name, "' has ", s.x.size(), " x values and ", s.y.size(),
          " y values");
    xs.insert(xs.end(), s.x.begin(), s.x.end());
    ys.insert(ys.end(), s.y.begin(), s.y.end());
  }
  xs.insert(xs.end(), c.x_ticks.begin(), c.x_ticks.end());
  Axis ax = make_axis(xs, c.log_x), ay = make_axis(ys, c.log_y);
  if (!c.log_y) {  // a little headroom so lines do not sit on the frame
    const double pad = 0.05 * (ay.hi - ay.lo);
    ay.lo -= pad, ay.hi += pad;
  } else {
    ay.lo /= 1.05, ay.hi *= 1.05;
  }
  const double x0 = kLeft, x1 = kWidth - kRight, y0 = kHeight - kBottom, y1 = kTop;

  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kWidth << "\" height=\"" << kHeight
    << "\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  text(o, kWidth / 2 - kRight / 2 + kLeft / 2, 24, c.title, "middle", 15, "font-weight=\"bold\"");
  // Grid and ticks.
  const auto xt = !c.x_ticks.empty() ? c.x_ticks : (c.log_x ? log_ticks(ax, true) : linear_ticks(ax.lo, ax.hi));
  const auto yt = c.log_y ? log_ticks(ay, false) : linear_ticks(ay.lo, ay.hi);
  for (double v : xt) {
    if (v < ax.lo || v > ax.hi) continue;
    const double px = ax.map(v, x0, x1);
    o << "<line x1=\"" << num(px) << "\" y1=\"" << num(y0) << "\" x2=\"" << num(px) << "\" y2=\"" << num(y1)
      << "\" stroke=\"#e4e4e4\"/>\n";
    text(o, px, y0 + 17, label(v));
  }
  for (double v : yt) {
    if (v < ay.lo || v > ay.hi) continue;
    const double py = ay.map(v, y0, y1);
    o << "<line x1=\"" << num(x0) << "\" y1=\"" << num(py) << "\" x2=\"" << num(x1) << "\" y2=\"" << num(py)
      << "\" stroke=\"#e4e4e4\"/>\n";
    text(o, x0 - 6, py + 4, label(v), "end");
  }
  o << "<rect x=\"" << num(x0) << "\" y=\"" << num(y1) << "\" width=\"" << num(x1 - x0) << "\" height=\""
    << num(y0 - y1) << "\" fill=\"none\" stroke=\"#444\"/>\n";
  text(o, (x0 + x1) / 2, kHeight - 14, c.x_label + (c.log_x ? " (log scale)" : ""));
  {
    std::ostringstream rot;
    rot << "transform=\"rotate(-90 18 " << num((y0 + y1) / 2) << ")\"";
    text(o, 18, (y0 + y1) / 2, c.y_label + (c.log_y ? " (log scale)" : ""), "middle", 12, rot.str().c_str());
  }
  // Series: a polyline through the finite points, a dot on each (so single points show).
  for (size_t i = 0; i < c.series.size(); ++i) {
    const auto& s = c.series[i];
    const char* colour = kPalette[i % (sizeof kPalette / sizeof kPalette[0])];
    std::ostringstream pts;
    int n = 0;
    for (size_t k = 0; k < s.x.size(); ++k) {
      if (!std::isfinite(s.x[k]) || !std::isfinite(s.y[k])) continue;
      if ((c.log_x && s.x[k] <= 0) || (c.log_y && s.y[k] <= 0)) continue;
      const double px = ax.map(s.x[k], x0, x1), py = ay.map(std::clamp(s.y[k], ay.lo, ay.hi), y0, y1);
      pts << num(px) << "," << num(py) << " ";
      if (s.x.size() <= 40) o << "<circle cx=\"" << num(px) << "\" cy=\"" << num(py) << "\" r=\"3\" fill=\"" << colour << "\"/>\n";
      ++n;
    }
    if (n > 1)
      o << "<polyline fill=\"none\" stroke-width=\"2\" stroke=\"" << colour << "\" points=\"" << pts.str() << "\"/>\n";
    const double ly = kTop + 10 + 20.0 * static_cast<double>(i);
    o << "<line x1=\"" << num(x1 + 14) << "\" y1=\"" << num(ly) << "\" x2=\"" << num(x1 + 38) << "\" y2=\"" << num(ly)
      << "\" stroke-width=\"3\" stroke=\"" << colour << "\"/>\n";
    text(o, x1 + 44, ly + 4, s.name, "start");
  }
  o << "</svg>\n";
  return o.str();
}

std::string heatmap_svg(const Heatmap& h) {
  check(h.values.size() == h.rows.size(), "heat map: ", h.values.size(), " value rows for ", h.rows.size(),
        " row labels");
  for (const auto& r : h.values)
    check(r.size() == h.columns.size(), "heat map: a row has ", r.size(), " values for ", h.columns.size(), " columns");
  const double cell_w = std::clamp(520.0 / std::max<size_t>(1, h.columns.size()), 36.0, 90.0);
  const double cell_h = std::clamp(330.0 / std::max<size_t>(1, h.rows.size()), 22.0, 60.0);
  const double left = 90, top = 44;
  const double width = left + cell_w * static_cast<double>(h.columns.size()) + 30;
  const double height = top + cell_h * static_cast<double>(h.rows.size()) + 60;
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << num(width) << "\" height=\"" << num(height)
    << "\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  text(o, width / 2, 24, h.title, "middle", 15, "font-weight=\"bold\"");
  for (size_t r = 0; r < h.rows.size(); ++r) {
    const double y = top + cell_h * static_cast<double>(r);
    text(o, left - 6, y + cell_h / 2 + 4, h.rows[r], "end");
    for (size_t c = 0; c < h.columns.size(); ++c) {
      const double x = left + cell_w * static_cast<double>(c);
      const double v = h.values[r][c];
      std::string fill = "#dddddd", caption = "-";
      if (std::isfinite(v)) {
        // Red (0) through yellow to green (1), like the paper's passkey figure.
        const double t = std::clamp(v, 0.0, 1.0);
        const int red = t < 0.5 ? 220 : static_cast<int>(220 - (t - 0.5) * 2 * 180);
        const int green = t < 0.5 ? static_cast<int>(60 + t * 2 * 150) : 210;
        char buf[16];
        std::snprintf(buf, sizeof buf, "#%02x%02x50", red, green);
        fill = buf;
        std::snprintf(buf, sizeof buf, "%.0f", 100 * t);
        caption = buf;
      }
      o << "<rect x=\"" << num(x) << "\" y=\"" << num(y) << "\" width=\"" << num(cell_w) << "\" height=\"" << num(cell_h)
        << "\" fill=\"" << fill << "\" stroke=\"white\"/>\n";
      text(o, x + cell_w / 2, y + cell_h / 2 + 4, caption, "middle", 11);
    }
  }
  const double bottom = top + cell_h * static_cast<double>(h.rows.size());
  for (size_t c = 0; c < h.columns.size(); ++c)
    text(o, left + cell_w * (static_cast<double>(c) + 0.5), bottom + 16, h.columns[c]);
  text(o, left + cell_w * static_cast<double>(h.columns.size()) / 2, bottom + 40, h.x_label);
  {
    std::ostringstream rot;
    rot << "transform=\"rotate(-90 16 " << num(top + (bottom - top) / 2) << ")\"";
    text(o, 16, top + (bottom - top) / 2, h.y_label, "middle", 12, rot.str().c_str());
  }
  o << "</svg>\n";
  return o.str();
}

void write_svg(const std::string& path, const std::string& svg) { io::write_file_atomic(path, svg); }

}  // namespace samba::plot
