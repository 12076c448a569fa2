#include "samba/core/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace samba {

namespace {
double seconds_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}
}  // namespace

Progress::Progress(std::string label, uint64_t total, ProgressOptions options, std::FILE* out)
    : label_(std::move(label)), total_(total), options_(std::move(options)), out_(out) {
  tty_ = options_.force_tty >= 0 ? options_.force_tty == 1 : (out_ != nullptr && ::isatty(fileno(out_)) == 1);
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

Progress::~Progress() {
  if (!finished_) finish();
}

double Progress::elapsed_s() const { return seconds_between(start_, std::chrono::steady_clock::now()); }

double Progress::rate() const {
  const double t = elapsed_s();
  return t > 0 ? static_cast<double>(done_) / t : 0.0;
}

std::string Progress::human(double v) {
  const char* suffix[] = {"", "k", "M", "G", "T"};
  int i = 0;
  while (std::fabs(v) >= 1000.0 && i < 4) {
    v /= 1000.0;
    ++i;
  }
  char buf[32];
  if (i == 0) {
    std::snprintf(buf, sizeof(buf), v == std::floor(v) ? "%.0f" : "%.1f", v);
  } else {
    std::snprintf(buf, sizeof(buf), v < 10 ? "%.2f%s" : (v < 100 ? "%.1f%s" : "%.0f%s"), v, suffix[i]);
  }
  return buf;
}

std::string Progress::duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const uint64_t total = static_cast<uint64_t>(s + 0.5);
  const uint64_t h = total / 3600, m = (total / 60) % 60, sec = total % 60;
  char buf[32];
  if (h > 0) {
    std::snprintf(buf, sizeof(buf), "%lluh%02llum", static_cast<unsigned long long>(h),
                  static_cast<unsigned long long>(m));
  } else if (m > 0) {
    std::snprintf(buf, sizeof(buf), "%llum%02llus", static_cast<unsigned long long>(m),
                  static_cast<unsigned long long>(sec));
  } else {
    std::snprintf(buf, sizeof(buf), "%llus", static_cast<unsigned long long>(sec));
  }
  return buf;
}

std::string Progress::line() const {
  std::string s = label_ + " ";
  const double r = rate();
  if (total_ > 0) {
    const double frac = std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_));
    if (tty_) {
      const int filled = static_cast<int>(frac * options_.bar_width);
      s += "[" + std::string(filled, '#') + std::string(options_.bar_width - filled, '.') + "] ";
    }
    char pct[16];
    std::snprintf(pct, sizeof(pct), "%5.1f%% ", 100.0 * frac);
    s += pct;
    s += human(static_cast<double>(done_)) + "/" + human(static_cast<double>(total_)) + " " + options_.unit;
    const double eta = r > 0 && done_ < total_ ? static_cast<double>(total_ - done_) / r : 0.0;
    s += " | " + human(r) + " " + options_.unit + "/s | " + duration(elapsed_s()) + " elapsed, ETA " +
         (r > 0 ? duration(eta) : std::string("?"));
  } else {
    s += human(static_cast<double>(done_)) + " " + options_.unit + " | " + human(r) + " " + options_.unit + "/s | " +
         duration(elapsed_s()) + " elapsed";
  }
  if (!postfix_.empty()) s += " | " + postfix_;
  return s;
}

void Progress::update(uint64_t done) {
  done_ = done;
  if (out_ == nullptr || finished_) return;
  const auto now = std::chrono::steady_clock::now();
  const double since = seconds_between(last_draw_, now);
  if (since >= (tty_ ? options_.redraw_interval_s : options_.log_interval_s)) {
    last_draw_ = now;
    draw(false);
  }
}

void Progress::draw(bool final) {
  const std::string s = line();
  if (tty_) {
    // Pad over the previous line's tail: a shorter line would leave stale characters.
    const size_t pad = last_width_ > s.size() ? last_width_ - s.size() : 0;
    std::fprintf(out_, "\r%s%s%s", s.c_str(), std::string(pad, ' ').c_str(), final ? "\n" : "");
    last_width_ = s.size();
  } else {
    // A log already holding this exact count would only gain a duplicate line.
    if (final && last_drawn_done_ == done_) return;
    std::fprintf(out_, "%s\n", s.c_str());
  }
  last_drawn_done_ = done_;
  std::fflush(out_);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (out_ != nullptr) draw(true);
}

}  // namespace samba
