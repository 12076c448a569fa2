#pragma once
// What `samba inspect` reports, computed from the config alone (no tensors are allocated,
// so a 3.8B model is described instantly). Tests check the counts against built modules.
#include <cstdint>
#include <string>
#include <vector>

#include "samba/core/config.h"

namespace samba {

struct LayerSummary {
  int64_t index = 0;
  char symbol = '?';
  std::string name;
  int64_t params = 0;  // mixer + its pre-norm
  double forward_flops_per_token = 0;
};

struct MemoryEstimate {
  double weights = 0;      // fp32 master weights
  double gradients = 0;    // fp32
  double optimizer = 0;    // AdamW: two fp32 moments
  double activations = 0;  // saved for backward, one micro-batch
  double logits = 0;       // logits + their gradient, one micro-batch
  double total() const { return weights + gradients + optimizer + activations + logits; }
};

struct ModelSummary {
  std::vector<LayerSummary> layers;
  int64_t total_params = 0;
  int64_t embedding_params = 0;  // token embedding (+ untied LM head)
  int64_t non_embedding_params = 0;
  double forward_flops_per_token = 0;   // at cfg.seq_len, including the LM head
  double training_flops_per_token = 0;  // forward + backward = 3 x forward
  MemoryEstimate memory;
};

// micro_batch sequences of cfg.seq_len tokens; activation_bytes 2 for bf16, 4 for fp32.
ModelSummary summarize(const ModelConfig& cfg, int64_t micro_batch = 1, int activation_bytes = 2);
// Human-readable report (the output of `samba inspect`).
std::string format_summary(const ModelConfig& cfg, const ModelSummary& s, int64_t micro_batch, int activation_bytes);
// "421.7M", "1.33B", ...
std::string human_count(double n);
std::string human_bytes(double n);

}  // namespace samba
