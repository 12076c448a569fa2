#pragma once
// AdamW on fp32 master weights (the parameters themselves stay fp32; bf16 is only the
// autocast compute dtype), the warmup + cosine schedule, and global grad-norm clipping.
// State is exposed by name so checkpoints store it as safetensors next to the model.
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "samba/core/train_config.h"

namespace samba {

class AdamW {
 public:
  AdamW(std::vector<std::pair<std::string, torch::Tensor>> named_params, const OptimizerConfig& cfg);

  // One update with learning rate `lr` using the parameters' current .grad().
  void step(double lr);
  void zero_grad();
  int64_t steps_taken() const { return step_; }

  // "<name>.exp_avg", "<name>.exp_avg_sq" and "__step__" (int64 scalar).
  std::vector<std::pair<std::string, torch::Tensor>> state() const;
  void load_state(const std::vector<std::pair<std::string, torch::Tensor>>& state, const std::string& origin);

 private:
  struct Slot {
    std::string name;
    torch::Tensor param, exp_avg, exp_avg_sq;
  };
  std::vector<Slot> slots_;
  OptimizerConfig cfg_;
  int64_t step_ = 0;
};

// Linear warmup over warmup_fraction of total_steps, then cosine from lr to min_lr.
double learning_rate(const OptimizerConfig& cfg, int64_t step, int64_t total_steps);

// Global L2 norm of all gradients; scales them to max_norm when larger (max_norm > 0).
// Returns the norm before clipping (non-finite if any gradient is).
double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm);

}  // namespace samba
