#include "samba/eval/perplexity.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "samba/core/error.h"
#include "samba/core/progress.h"
#include "samba/data/loader.h"
#include "samba/data/shard.h"
#include "samba/runtime/device.h"

namespace samba {

namespace {

int64_t longest_of(const std::vector<int64_t>& contexts) {
  check(!contexts.empty(), "evaluation needs at least one context length");
  int64_t longest = 0;
  for (int64_t c : contexts) {
    check(c > 0, "evaluation context lengths must be positive, got ", c);
    longest = std::max(longest, c);
  }
  return longest;
}

}  // namespace

int64_t perplexity_blocks(const std::vector<std::string>& shards, const std::vector<int64_t>& contexts,
                          const EvalOptions& options) {
  const int64_t longest = longest_of(contexts);
  check(options.max_tokens > 0, "evaluation max_tokens must be positive, got ", options.max_tokens);
  check(options.max_blocks >= 0, "evaluation max_blocks must be >= 0 (0 = no cap), got ", options.max_blocks);
  // Counted from the shard headers first, so too little data gets this message rather than the
  // loader's (which speaks of windows and ranks).
  uint64_t total = 0;
  for (const auto& path : shards) total += data::ShardReader(path, {/*verify=*/false}).size();
  check(total >= static_cast<uint64_t>(longest) + 1, "the validation split has ", total,
        " tokens, fewer than one block of ", longest + 1, " for context ", longest,
        ": evaluate at shorter lengths or hold out more data (samba data --val-fraction)");
  // Blocks of longest+1 tokens are the loader's windows at seq_len = longest.
  auto loader = data::PackedLoader::sequential(shards, longest, 0, 1, /*verify=*/false);
  const auto available = static_cast<int64_t>(loader.num_windows());
  int64_t blocks = std::max<int64_t>(1, options.max_tokens / longest);
  if (options.max_blocks > 0) blocks = std::min(blocks, options.max_blocks);
  return std::min(blocks, available);
}

std::vector<PerplexitySums> perplexity_sums(LanguageModel& model, const std::vector<std::string>& shards,
                                            const std::vector<int64_t>& contexts, const EvalOptions& options,
                                            int rank, int world) {
  check(world >= 1 && rank >= 0 && rank < world, "evaluation rank ", rank, " of world ", world, " is not valid");
  const int64_t longest = longest_of(contexts);
  const int64_t blocks = perplexity_blocks(shards, contexts, options);
  auto loader = data::PackedLoader::sequential(shards, longest);
  const int64_t batch = std::max<int64_t>(1, options.batch_tokens / longest);
  const auto device = model->embed->weight.device();

  // This rank's blocks: rank, rank + world, ...
  std::vector<int64_t> mine;
  for (int64_t b = rank; b < blocks; b += world) mine.push_back(b);

  std::vector<PerplexitySums> sums(contexts.size());
  for (size_t i = 0; i < contexts.size(); ++i) sums[i].context = contexts[i];

  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  std::unique_ptr<Progress> progress;
  if (options.progress)
    progress = std::make_unique<Progress>("eval", static_cast<uint64_t>(mine.size()), ProgressOptions{"blocks"});
  std::vector<int32_t> rows;
  for (size_t start = 0; start < mine.size(); start += static_cast<size_t>(batch)) {
    const auto n = static_cast<int64_t>(std::min<size_t>(static_cast<size_t>(batch), mine.size() - start));
    rows.resize(static_cast<size_t>(n * (longest + 1)));
    for (int64_t r = 0; r < n; ++r)
      loader.read_window(static_cast<uint64_t>(mine[start + static_cast<size_t>(r)]),
                         rows.data() + r * (longest + 1));
    auto t = torch::from_blob(rows.data(), {n, longest + 1}, torch::kInt32).to(device, torch::kLong);
    for (size_t i = 0; i < contexts.size(); ++i) {
      const int64_t c = contexts[i];
      torch::Tensor logits;
      {
        runtime::AutocastScope autocast(device, options.bf16);
        logits = model->forward(t.slice(1, 0, c));
      }
      auto nll = torch::nn::functional::cross_entropy(
          logits.reshape({-1, logits.size(-1)}).to(torch::kFloat), t.slice(1, 1, c + 1).reshape({-1}),
          torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
      // Per-block mean in double: the standard error is computed across blocks.
      auto block_mean = nll.reshape({n, c}).to(torch::kDouble).mean(1).cpu();
      auto acc = block_mean.accessor<double, 1>();
      for (int64_t r = 0; r < n; ++r) {
        sums[i].blocks += 1;
        sums[i].tokens += static_cast<double>(c);
        sums[i].loss_sum += acc[r] * static_cast<double>(c);
        sums[i].block_loss_sq_sum += acc[r] * acc[r];
      }
    }
    if (progress) progress->update(static_cast<uint64_t>(start) + static_cast<uint64_t>(n));
  }
  if (progress) progress->finish();
  if (was_training) model->train();
  return sums;
}

std::vector<double> pack_sums(const std::vector<PerplexitySums>& sums) {
  std::vector<double> flat;
  flat.reserve(sums.size() * 4);
  for (const auto& s : sums) {
    flat.push_back(s.blocks);
    flat.push_back(s.tokens);
    flat.push_back(s.loss_sum);
    flat.push_back(s.block_loss_sq_sum);
  }
  return flat;
}

std::vector<PerplexitySums> unpack_sums(const std::vector<double>& flat, const std::vector<PerplexitySums>& like) {
  check(flat.size() == like.size() * 4, "unpack_sums: ", flat.size(), " values for ", like.size(), " contexts");
  std::vector<PerplexitySums> out = like;
  for (size_t i = 0; i < out.size(); ++i) {
    out[i].blocks = flat[4 * i];
    out[i].tokens = flat[4 * i + 1];
    out[i].loss_sum = flat[4 * i + 2];
    out[i].block_loss_sq_sum = flat[4 * i + 3];
  }
  return out;
}

PerplexityResult finalize_perplexity(const PerplexitySums& s) {
  check(s.blocks >= 1 && s.tokens >= 1, "finalize_perplexity: no block was scored at context ", s.context);
  PerplexityResult r;
  r.context = s.context;
  r.blocks = std::llround(s.blocks);
  r.tokens = std::llround(s.tokens);
  r.loss = s.loss_sum / s.tokens;
  r.ppl = std::exp(r.loss);
  if (s.blocks >= 2) {
    // Every block has the same number of tokens, so the token mean is the mean of block means.
    const double var = std::max(0.0, (s.block_loss_sq_sum - s.blocks * r.loss * r.loss) / (s.blocks - 1));
    r.loss_se = std::sqrt(var / s.blocks);
    r.ppl_se = r.ppl * r.loss_se;
  }
  return r;
}

std::vector<PerplexityResult> evaluate_prefix_perplexity(LanguageModel& model, const std::vector<std::string>& shards,
                                                         const std::vector<int64_t>& contexts,
                                                         const EvalOptions& options) {
  std::vector<PerplexityResult> out;
  for (const auto& s : perplexity_sums(model, shards, contexts, options)) out.push_back(finalize_perplexity(s));
  return out;
}

PerplexityResult evaluate_perplexity(LanguageModel& model, const std::vector<std::string>& shards, int64_t context,
                                     const EvalOptions& options) {
  return evaluate_prefix_perplexity(model, shards, {context}, options).front();
}

}  // namespace samba
