#pragma once
// Memory per GPU of data-parallel training, from the analytic model summary: what `samba
// inspect --world N [--zero1]` prints so users see before launching whether a model fits.
// Per rank: fp32 parameters (the master weights, replicated: the forward reads them) and the
// flat fp32 gradient buffer are whole; the AdamW moments are whole, or 1/world of them under
// ZeRO-1; activations and logits are one micro-batch's.
#include <string>
#include <vector>

#include "samba/model/analysis.h"

namespace samba::dist {

struct RankMemory {
  int world = 1;
  bool zero1 = false;
  double weights = 0, gradients = 0, optimizer = 0, activations = 0;
  double total() const { return weights + gradients + optimizer + activations; }
};

RankMemory rank_memory(const ModelSummary& s, int world, bool zero1);
// A table over the given world sizes, with and without ZeRO-1, against common GPU sizes.
std::string format_rank_memory(const ModelSummary& s, const std::vector<int>& worlds);

}  // namespace samba::dist
