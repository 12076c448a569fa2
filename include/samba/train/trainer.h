#pragma once
// `samba train`: one loop for one process or many. The trainer is assembled from components
// (components.h: state, step outcome, metrics, evaluator, checkpointer, stop signals, fault
// injection) over the runtime (launch environment, device, communicator) and dist (flat
// buffers, gradient reducer); the loop itself never mentions ranks.
#include <cstdint>
#include <limits>
#include <string>

#include "samba/core/train_config.h"

namespace samba {

struct TrainOptions {
  bool resume = false;               // continue from the newest complete checkpoint in run_dir
  int64_t stop_after_steps = 0;      // stop (with a checkpoint) after this many steps; 0 = run to the end
  bool progress = true;              // progress bar on the console (rank 0)
  bool overwrite = false;            // a fresh run may replace an older run in run_dir
  bool allow_recipe_change = false;  // --resume may change settings that alter the data order or batch
};

struct TrainResult {
  int64_t steps = 0;
  int64_t tokens = 0;
  double last_loss = std::numeric_limits<double>::quiet_NaN();
  double val_loss = std::numeric_limits<double>::quiet_NaN();
  double val_ppl = std::numeric_limits<double>::quiet_NaN();
  double unigram_ppl = std::numeric_limits<double>::quiet_NaN();
  std::string last_checkpoint;
  bool interrupted = false;  // stopped by SIGTERM / SIGINT / SIGHUP (a checkpoint was written)
  bool diverged = false;     // the final validation loss is no better than the unigram baseline
  int rank = 0, world = 1;
};

TrainResult train(const TrainConfig& cfg, const TrainOptions& options);

// The checkpoint directory of a run.
std::string checkpoint_root(const TrainConfig& cfg);

}  // namespace samba
