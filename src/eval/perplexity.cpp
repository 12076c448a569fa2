#include "samba/eval/perplexity.h"

#include <cmath>
#include <memory>

#include "samba/core/error.h"
#include "samba/core/progress.h"
#include "samba/data/loader.h"
#include "samba/runtime/device.h"

namespace samba {

PerplexityResult evaluate_perplexity(LanguageModel& model, const std::vector<std::string>& shards, int64_t context,
                                     const EvalOptions& options) {
  check(context > 0, "evaluation context must be positive");
  auto loader = data::PackedLoader::sequential(shards, context);
  check(loader.num_windows() > 0, "the validation split has ", loader.total_tokens(), " tokens, fewer than one window of ",
        context + 1, ": evaluate at a shorter length or hold out more data (samba data --val-fraction)");
  const int64_t wanted = std::max<int64_t>(1, options.max_tokens / context);
  const int64_t windows = std::min<int64_t>(wanted, static_cast<int64_t>(loader.num_windows()));
  const int64_t batch = std::max<int64_t>(1, options.batch_tokens / context);
  const auto device = model->embed->weight.device();

  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  double loss_sum = 0;
  int64_t done = 0, tokens = 0;
  std::unique_ptr<Progress> progress;
  if (options.progress)
    progress = std::make_unique<Progress>("eval@" + std::to_string(context), static_cast<uint64_t>(windows),
                                          ProgressOptions{"win"});
  while (done < windows) {
    const int64_t b = std::min(batch, windows - done);
    std::vector<int32_t> rows = loader.next_batch(b);
    const int64_t got = static_cast<int64_t>(rows.size()) / (context + 1);
    if (got == 0) break;
    auto t = torch::from_blob(rows.data(), {got, context + 1}, torch::kInt32).to(device, torch::kLong);
    runtime::AutocastScope autocast(device, options.bf16);
    auto logits = model->forward(t.slice(1, 0, context));
    auto loss = torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                                     t.slice(1, 1, context + 1).reshape({-1}),
                                                     torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    loss_sum += loss.item<double>();
    tokens += got * context;
    done += got;
    if (progress) progress->update(static_cast<uint64_t>(done));
  }
  if (progress) progress->finish();
  if (was_training) model->train();
  PerplexityResult r;
  r.context = context;
  r.windows = done;
  r.tokens = tokens;
  r.loss = loss_sum / static_cast<double>(std::max<int64_t>(1, tokens));
  r.ppl = std::exp(r.loss);
  return r;
}

}  // namespace samba
