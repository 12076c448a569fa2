#pragma once
// What an ablation measured, read back from the run directories (so a report can be rebuilt
// at any time from disk), and written as results.csv, results.md (the paper's Table 3
// layout: model, params, speed, ppl at 1x/2x/4x) and SVG plots.
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "samba/ablate/spec.h"

namespace samba::ablate {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct PplPoint {
  int64_t context = 0, multiple = 0, blocks = 0, tokens = 0;
  double ppl = kNaN, ppl_se = kNaN, loss = kNaN;
};

struct RunResult {
  RunSpec spec;
  std::string dir;
  std::string status;  // "done", "trained", "training", "not started", "failed: ..."
  int64_t params = 0;
  int64_t seq_len = 0;
  int64_t tokens_trained = 0;
  double tokens_per_s = kNaN;  // median over logged steps
  double train_seconds = kNaN;
  std::vector<std::pair<double, double>> loss_curve;  // (tokens, training loss)
  std::vector<PplPoint> ppl;
  int64_t block_tokens = 0;
  double passkey_mean = kNaN;
  std::vector<int64_t> passkey_lengths;
  std::vector<double> passkey_depths;
  std::vector<std::vector<double>> passkey_accuracy;
};

// Reads <dir>/train/metrics.jsonl, trained.json, eval.json and passkey.json (whatever exists).
RunResult collect_run(const RunSpec& spec, const std::string& dir);

// results.csv, results.md and plots/ under out_dir.
void write_report(const AblationSpec& spec, const std::vector<RunResult>& runs);

// The markdown table alone (also printed by the runner at the end).
std::string results_table(const AblationSpec& spec, const std::vector<RunResult>& runs);

}  // namespace samba::ablate
