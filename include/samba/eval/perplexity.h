#pragma once
// Validation perplexity at several context lengths, the way the paper measures length
// extrapolation (spec section 6): the held-out stream is cut into blocks of L+1 tokens, L the
// longest context asked for (4x the training length), and every shorter context scores the
// PREFIX of the same blocks. The columns of a 1x/2x/4x table therefore compare like with like,
// and the spread across blocks gives a standard error for every figure.
//
// Data-parallel use: perplexity_sums() scores the blocks of one rank (block b belongs to rank
// b % world) and returns plain sums; the caller all-reduces pack_sums() of them and calls
// finalize_perplexity() on the total. evaluate_prefix_perplexity() is that with world 1.
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "samba/model/model.h"

namespace samba {

struct EvalOptions {
  // Blocks = max_tokens / longest context (at least one), capped by max_blocks (0 = no cap) and
  // by the validation data. The default scores up to 4M tokens at the longest length: the
  // paper's 200 blocks of 16K fit, and a small validation split is used whole.
  int64_t max_tokens = int64_t{4} << 20;
  int64_t max_blocks = 0;
  int64_t batch_tokens = 8192;  // tokens per forward at the longest context (batch >= 1 block)
  bool bf16 = false;            // autocast on GPU
  bool progress = false;
};

// Additive over blocks, hence over ranks: everything the result needs.
struct PerplexitySums {
  int64_t context = 0;
  double blocks = 0;
  double tokens = 0;
  double loss_sum = 0;           // sum of next-token cross-entropies (nats)
  double block_loss_sq_sum = 0;  // sum over blocks of (mean loss of the block)^2
};

struct PerplexityResult {
  int64_t context = 0;
  int64_t blocks = 0;
  int64_t tokens = 0;  // predicted tokens
  double loss = 0;     // mean next-token cross-entropy (nats)
  double ppl = 0;
  double loss_se = 0;  // standard error of `loss` across blocks (0 with a single block)
  double ppl_se = 0;   // ppl * loss_se (delta method)
};

// The number of blocks every rank must agree on for these contexts (throws when the
// validation data cannot hold one block of longest+1 tokens, naming the fix).
int64_t perplexity_blocks(const std::vector<std::string>& shards, const std::vector<int64_t>& contexts,
                          const EvalOptions& options);

// This rank's sums, one per context, in the order given.
std::vector<PerplexitySums> perplexity_sums(LanguageModel& model, const std::vector<std::string>& shards,
                                            const std::vector<int64_t>& contexts, const EvalOptions& options,
                                            int rank = 0, int world = 1);

// Flat doubles for an all-reduce (sum) and back; the contexts travel unchanged.
std::vector<double> pack_sums(const std::vector<PerplexitySums>& sums);
std::vector<PerplexitySums> unpack_sums(const std::vector<double>& flat, const std::vector<PerplexitySums>& like);

PerplexityResult finalize_perplexity(const PerplexitySums& sums);

// One process, all blocks: perplexity_sums + finalize_perplexity.
std::vector<PerplexityResult> evaluate_prefix_perplexity(LanguageModel& model, const std::vector<std::string>& shards,
                                                         const std::vector<int64_t>& contexts,
                                                         const EvalOptions& options);

// One context (blocks of context+1 tokens): what the trainer's periodic evaluation uses.
PerplexityResult evaluate_perplexity(LanguageModel& model, const std::vector<std::string>& shards, int64_t context,
                                     const EvalOptions& options);

}  // namespace samba
