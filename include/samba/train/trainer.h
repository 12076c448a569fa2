#pragma once
// The one-process training loop (`samba train`). Data-parallel training wraps the same loop:
// the loader already shards windows by rank, and gradients are reduced between backward and
// the optimizer step (the hook is marked in trainer.cpp).
#include <cstdint>
#include <limits>
#include <string>

#include "samba/core/train_config.h"

namespace samba {

struct TrainOptions {
  bool resume = false;           // continue from the newest complete checkpoint in run_dir
  int64_t stop_after_steps = 0;  // stop (with a checkpoint) after this many steps; 0 = run to the end
  bool progress = true;          // progress bar on the console
};

struct TrainResult {
  int64_t steps = 0;
  int64_t tokens = 0;
  double last_loss = std::numeric_limits<double>::quiet_NaN();
  double val_loss = std::numeric_limits<double>::quiet_NaN();
  double val_ppl = std::numeric_limits<double>::quiet_NaN();
  double unigram_ppl = std::numeric_limits<double>::quiet_NaN();
  std::string last_checkpoint;
  bool interrupted = false;  // stopped by SIGTERM / SIGINT (a checkpoint was written)
};

TrainResult train(const TrainConfig& cfg, const TrainOptions& options);

// The checkpoint directory of a run.
std::string checkpoint_root(const TrainConfig& cfg);

}  // namespace samba
