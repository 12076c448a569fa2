#pragma once
// Validation perplexity at several context lengths (the paper reports 1x, 2x and 4x the
// training length to show length extrapolation).
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "samba/model/model.h"

namespace samba {

struct PerplexityResult {
  int64_t context = 0;
  int64_t windows = 0;
  int64_t tokens = 0;  // predicted tokens
  double loss = 0;     // mean next-token cross-entropy (nats)
  double ppl = 0;
};

struct EvalOptions {
  int64_t max_tokens = 65536;  // per context length (whole windows, at least one)
  int64_t batch_tokens = 8192; // tokens per forward (batch = max(1, batch_tokens / context))
  bool bf16 = false;           // autocast on GPU
  bool progress = false;
};

// Non-overlapping windows of `context`+1 tokens from the shards, in stream order.
PerplexityResult evaluate_perplexity(LanguageModel& model, const std::vector<std::string>& shards, int64_t context,
                                     const EvalOptions& options);

}  // namespace samba
