#pragma once
// A progress bar for long loops (tokenizing, training). On a terminal it redraws one line in
// place; when stderr is a file or pipe (CI, nohup, SLURM logs) it prints a plain line every
// `log_interval_s` instead, so logs stay readable and do not fill with carriage returns.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace samba {

struct ProgressOptions {
  std::string unit = "it";      // "tok", "docs", "steps" ...
  double redraw_interval_s = 0.1;
  double log_interval_s = 10.0;
  int bar_width = 30;
  int force_tty = -1;           // -1: detect with isatty; 0/1 force (tests)
};

class Progress {
 public:
  // total 0 means unknown: no bar and no ETA, only count and rate.
  Progress(std::string label, uint64_t total, ProgressOptions options = {}, std::FILE* out = stderr);
  ~Progress();  // finishes the line if finish() was not called
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void advance(uint64_t n = 1) { update(done_ + n); }
  void update(uint64_t done);
  void set_total(uint64_t total) { total_ = total; }
  // Extra text after the numbers, e.g. "loss 3.21"; shown at the next redraw.
  void set_postfix(std::string text) { postfix_ = std::move(text); }
  void finish();

  uint64_t done() const { return done_; }
  double elapsed_s() const;
  double rate() const;  // units per second since construction

  // "1.23M", "512", "4.1k": used for counts and rates.
  static std::string human(double value);
  // "1h02m", "3m05s", "12s"
  static std::string duration(double seconds);
  // The line as it would be drawn now (without the leading \r); for tests and logging.
  std::string line() const;

 private:
  void draw(bool final);

  std::string label_;
  uint64_t total_;
  ProgressOptions options_;
  std::FILE* out_;
  bool tty_;
  uint64_t done_ = 0;
  std::string postfix_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  bool finished_ = false;
  size_t last_width_ = 0;
  uint64_t last_drawn_done_ = UINT64_MAX;
};

}  // namespace samba
