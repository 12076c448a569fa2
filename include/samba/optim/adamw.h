#pragma once
// AdamW on fp32 master weights held in flat buffers (dist/flat_params.h): one update runs over
// a few long ranges instead of a loop over parameters — the whole buffer when every rank keeps
// the full optimizer state, or this rank's pieces under ZeRO-1. The moments live in one flat
// buffer per rank covering exactly those ranges. Also the warmup + cosine schedule.
//
// State is saved by logical position (see flat_params.h), so it reloads under another world
// size, bucket size or ZeRO setting: load_state() takes the saved shards of every old rank
// and copies the stretches that overlap this rank's ranges.
#include <torch/torch.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "samba/core/train_config.h"
#include "samba/dist/flat_params.h"

namespace samba {

// One saved optimizer shard: `segments` are (logical offset, length, offset in the shard's
// flat tensors) triples; `read` copies `length` moments starting at a shard offset into a CPU
// float tensor (from a memory-mapped file or a tensor).
struct SavedOptimizerShard {
  struct Span {
    int64_t logical = 0, length = 0, offset = 0;
  };
  std::vector<Span> spans;
  std::function<void(const char* which /*"exp_avg" | "exp_avg_sq"*/, int64_t offset, int64_t length, float* out)> read;
  std::string origin;  // for error messages
};

class AdamW {
 public:
  // `ranges`: physical [begin, end) pieces of `flat` this rank updates.
  AdamW(dist::FlatParameters& flat, std::vector<std::pair<int64_t, int64_t>> ranges, const OptimizerConfig& cfg);

  // Sum of squared gradients over this rank's ranges, as a device scalar (no host sync).
  torch::Tensor grad_sq_sum() const;
  // One update with learning rate `lr` using the gradients in the flat buffer scaled by
  // `grad_scale` (clipping). Only this rank's ranges change.
  void step(double lr, double grad_scale = 1.0);
  // The same update decided on the device, with no host synchronisation: `control` is a
  // tensor {grad_scale, apply} on the parameters' device; apply == 0 skips the update
  // (parameters, moments and the step count stay as they are).
  void step(double lr, const torch::Tensor& control);
  // Updates applied so far (the bias corrections' t); reads the device counter.
  int64_t steps_taken() const;

  // This rank's moments (flat, CPU copies) and their logical spans.
  torch::Tensor exp_avg() const { return exp_avg_; }
  torch::Tensor exp_avg_sq() const { return exp_avg_sq_; }
  std::vector<SavedOptimizerShard::Span> spans() const;
  int64_t state_numel() const { return exp_avg_.numel(); }
  // Fills this rank's moments from the union of `shards` (which must cover every logical
  // position this rank owns) and sets the step counter.
  void load_state(const std::vector<SavedOptimizerShard>& shards, int64_t steps_taken);

 private:
  dist::FlatParameters& flat_;
  std::vector<std::pair<int64_t, int64_t>> ranges_;
  std::vector<int64_t> range_offset_;  // offset of each range in the moment buffers
  OptimizerConfig cfg_;
  torch::Tensor exp_avg_, exp_avg_sq_;
  torch::Tensor updates_;  // float64 scalar on the parameters' device: updates applied
};

// The gradient-clipping factor for a global gradient norm (a device scalar, float64), as a
// device scalar: max_norm / (norm + 1e-6) above max_norm, else 1; max_norm <= 0 never clips.
torch::Tensor clip_scale(const torch::Tensor& norm, double max_norm);

// Linear warmup over warmup_fraction of total_steps, then cosine from lr to min_lr.
double learning_rate(const OptimizerConfig& cfg, int64_t step, int64_t total_steps);

}  // namespace samba
