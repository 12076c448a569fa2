#pragma once
// `samba ablate`: trains and evaluates every run of an ablation file, each in its own
// directory and in its own `samba` process (the trainer owns signal handlers and logging),
// then writes the report (report.h).
//
// Layout under out_dir:
//   <run>/recipe.yaml     the recipe generated for the run (model, data, run_dir, budget)
//   <run>/train/          the trainer's run directory (checkpoints, metrics.jsonl, train.log)
//   <run>/console.log     everything the run's processes printed
//   <run>/trained.json    written when training finished (the stage marker)
//   <run>/eval.json       `samba eval --json`; <run>/passkey.json + passkey.svg
//   results.csv, results.md, plots/*.svg
//
// Interrupted and run again, it skips finished stages, resumes a half-trained run from its
// newest checkpoint (`samba train --resume`), and starts the others.
#include <string>
#include <vector>

#include "samba/ablate/spec.h"

namespace samba::ablate {

struct RunnerOptions {
  std::string samba_bin;          // the binary to run stages with ("" = this process's, /proc/self/exe)
  std::vector<std::string> only;  // run names to do (empty = all); the report covers all
  bool report_only = false;       // rebuild results.* and plots from what is on disk
  std::string device = "auto";    // for eval and passkey (training follows the recipe)
};

// Returns 0 when every run finished, 1 when some failed, 130 when interrupted by a signal
// (SIGINT/SIGTERM/SIGHUP: the running stage is asked to checkpoint and stop first).
int run_ablation(const AblationSpec& spec, const RunnerOptions& options);

// Writes <dir>/recipe.yaml for `run` (the ablation's recipe with the run's model, the shared
// data, run_dir <dir>/train and the run's budget) and returns its path.
std::string write_run_recipe(const AblationSpec& spec, const RunSpec& run, const std::string& dir);

// The directory of `run` under the ablation's out_dir.
std::string run_dir(const AblationSpec& spec, const RunSpec& run);

}  // namespace samba::ablate
