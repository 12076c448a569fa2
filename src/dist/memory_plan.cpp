#include "samba/dist/memory_plan.h"

#include <cstdio>
#include <sstream>

#include "samba/core/error.h"

namespace samba::dist {

RankMemory rank_memory(const ModelSummary& s, int world, bool zero1) {
  check(world >= 1, "world size must be at least 1, got ", world);
  RankMemory m;
  m.world = world;
  m.zero1 = zero1 && world > 1;
  m.weights = s.memory.weights;
  m.gradients = s.memory.gradients;
  m.optimizer = m.zero1 ? s.memory.optimizer / world : s.memory.optimizer;
  m.activations = s.memory.activations + s.memory.logits;
  return m;
}

std::string format_rank_memory(const ModelSummary& s, const std::vector<int>& worlds) {
  std::ostringstream o;
  o << "  memory per GPU, data parallel (weights + grads fp32, AdamW moments, one micro-batch of activations):\n";
  o << "    ranks  ZeRO-1  weights   grads     moments   activ.    total     fits 80 GB / 141 GB\n";
  for (int w : worlds) {
    for (bool z : {false, true}) {
      if (z && w == 1) continue;
      const RankMemory m = rank_memory(s, w, z);
      char line[200];
      std::snprintf(line, sizeof line, "    %5d  %-6s  %-8s  %-8s  %-8s  %-8s  %-8s  %s / %s\n", w, z ? "yes" : "no",
                    human_bytes(m.weights).c_str(), human_bytes(m.gradients).c_str(), human_bytes(m.optimizer).c_str(),
                    human_bytes(m.activations).c_str(), human_bytes(m.total()).c_str(),
                    m.total() < 80.0 * 1e9 * 0.92 ? "yes" : "no", m.total() < 141.0 * 1e9 * 0.92 ? "yes" : "no");
      o << line;
    }
  }
  o << "    (a GPU counts as fitting with 8% left for the CUDA context, allocator slack and communication buffers)\n";
  return o.str();
}

}  // namespace samba::dist
