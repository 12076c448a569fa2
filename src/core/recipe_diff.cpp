#include "samba/core/recipe_diff.h"

#include <sstream>

namespace samba {
namespace {

std::string text(const std::string& v) { return v; }
std::string text(int64_t v) { return std::to_string(v); }
std::string text(uint64_t v) { return std::to_string(v); }
std::string text(double v) {
  std::ostringstream os;
  os.precision(17);  // a change in the last digit is still a change, and must show
  os << v;
  return os.str();
}

// Tokens per optimizer step as the trainer runs them (the stored recipe holds the resolved value).
int64_t step_tokens(const TrainConfig& c) {
  return c.global_batch_tokens > 0 ? c.global_batch_tokens : c.micro_batch * c.seq_len;
}

class Differ {
 public:
  explicit Differ(std::vector<RecipeChange>& out) : out_(out) {}
  template <typename T>
  void operator()(const char* key, const T& a, const T& b, RecipeChangeKind kind, const char* effect) {
    if (a == b) return;
    out_.push_back({key, text(a), text(b), kind, effect});
  }

 private:
  std::vector<RecipeChange>& out_;
};

}  // namespace

std::vector<RecipeChange> recipe_changes(const TrainConfig& o, const TrainConfig& n) {
  std::vector<RecipeChange> out;
  Differ diff(out);
  const auto breaks = RecipeChangeKind::kBreaksDataOrder;
  const auto stated = RecipeChangeKind::kStated;
  diff("data", o.data_dir, n.data_dir, breaks, "reads another dataset");
  diff("seed", o.seed, n.seed, breaks, "changes the data order");
  diff("seq_len", o.seq_len, n.seq_len, breaks, "changes the batches");
  diff("micro_batch", o.micro_batch, n.micro_batch, breaks, "changes the batches");
  diff("global_batch_tokens", step_tokens(o), step_tokens(n), breaks, "changes the tokens per optimizer step");
  diff("max_tokens", o.max_tokens, n.max_tokens, stated, "changes the run length and the LR schedule");
  const auto& a = o.optimizer;
  const auto& b = n.optimizer;
  diff("optimizer.lr", a.lr, b.lr, stated, "changes the LR schedule");
  diff("optimizer.min_lr", a.min_lr, b.min_lr, stated, "changes the LR schedule");
  diff("optimizer.warmup_fraction", a.warmup_fraction, b.warmup_fraction, stated, "changes the LR schedule");
  diff("optimizer.beta1", a.beta1, b.beta1, stated, "changes the optimizer");
  diff("optimizer.beta2", a.beta2, b.beta2, stated, "changes the optimizer");
  diff("optimizer.eps", a.eps, b.eps, stated, "changes the optimizer");
  diff("optimizer.weight_decay", a.weight_decay, b.weight_decay, stated, "changes the optimizer");
  diff("optimizer.grad_clip", a.grad_clip, b.grad_clip, stated, "changes gradient clipping");
  diff("precision", o.precision, n.precision, stated, "changes the numerics");
  diff("device", o.device, n.device, stated, "changes the device");
  diff("threads", o.threads, n.threads, stated, "changes CPU threads");
  diff("nan_policy", o.nan_policy, n.nan_policy, stated, "changes what a non-finite step does");
  diff("max_skipped_steps", o.max_skipped_steps, n.max_skipped_steps, stated, "changes what a non-finite step does");
  diff("log_every", o.log_every, n.log_every, stated, "changes the logging cadence");
  diff("eval_every", o.eval_every, n.eval_every, stated, "changes the evaluation cadence");
  diff("eval_tokens", o.eval_tokens, n.eval_tokens, stated, "changes the evaluation size");
  diff("checkpoint_every", o.checkpoint_every, n.checkpoint_every, stated, "changes the checkpoint cadence");
  diff("keep_checkpoints", o.keep_checkpoints, n.keep_checkpoints, stated, "changes how many checkpoints are kept");
  diff("peak_tflops", o.peak_tflops, n.peak_tflops, stated, "changes the MFU figure");
  return out;
}

bool breaks_data_order(const std::vector<RecipeChange>& changes) {
  for (const auto& c : changes)
    if (c.kind == RecipeChangeKind::kBreaksDataOrder) return true;
  return false;
}

std::string format_changes(const std::vector<RecipeChange>& changes) {
  std::string s;
  for (const auto& c : changes) {
    s += "  " + c.key + ": " + c.old_value + " -> " + c.new_value + " (" + c.effect;
    if (c.kind == RecipeChangeKind::kBreaksDataOrder) s += "; needs --allow-recipe-change";
    s += ")\n";
  }
  return s;
}

}  // namespace samba
