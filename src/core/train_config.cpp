#include "samba/core/train_config.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <limits>

#include "samba/core/checked_math.h"
#include "samba/core/error.h"
#include "samba/core/overrides.h"
#include "samba/core/yaml_reader.h"

namespace samba {
namespace fs = std::filesystem;

int64_t TrainConfig::accumulation_steps() const {
  if (global_batch_tokens <= 0) return 1;
  return global_batch_tokens / tokens_per_micro_batch();
}

int64_t TrainConfig::total_steps() const {
  const int64_t per_step = accumulation_steps() * tokens_per_micro_batch();
  return std::max<int64_t>(1, (max_tokens + per_step - 1) / per_step);
}

namespace {

constexpr int64_t kBig = std::numeric_limits<int64_t>::max();
// Token and step counts are capped at 2^50 (~10^15 tokens, far beyond any real run) so that
// sums and products of them (steps x tokens per step, step + cadence) cannot overflow.
constexpr int64_t kMaxTokens = int64_t{1} << 50;
constexpr int64_t kMaxSeqLen = int64_t{1} << 24;

void read_optimizer(YamlMap m, OptimizerConfig& o) {
  m.read("lr", o.lr, 0.0, 10.0);
  m.read("min_lr", o.min_lr, 0.0, 10.0);
  m.read("beta1", o.beta1, 0.0, 0.999999);
  m.read("beta2", o.beta2, 0.0, 0.999999);
  m.read("eps", o.eps, 0.0, 1.0);
  m.read("weight_decay", o.weight_decay, 0.0, 10.0);
  m.read("warmup_fraction", o.warmup_fraction, 0.0, 1.0);
  m.read("grad_clip", o.grad_clip, 0.0, 1e9);
  if (o.min_lr > o.lr) m.error("min_lr", "must not exceed lr");
  m.finish();
}

void read_distributed(YamlMap m, DistributedConfig& d) {
  m.read("zero1", d.zero1);
  m.read("bucket_mb", d.bucket_mb, 0.0625, 4096.0);
  m.read("timeout_s", d.timeout_s, 1, 7 * 24 * 3600);
  m.finish();
}

// Paths in a recipe are relative to the recipe file unless absolute; data and run
// directories are relative to the working directory (where the user runs samba).
std::string relative_to(const std::string& file, const std::string& path) {
  fs::path p(path);
  if (p.is_absolute()) return p.string();
  return (fs::path(file).parent_path() / p).lexically_normal().string();
}

// Checks that need the model (its seq_len) and products of several values, in overflow-safe
// arithmetic: each error names the key to change.
void check_sizes(const YamlMap& m, const TrainConfig& c) {
  if (c.seq_len > kMaxSeqLen)
    m.error("seq_len", "(" + std::to_string(c.seq_len) + ", from the model when not set here) must be between 1 and " +
                           std::to_string(kMaxSeqLen));
  const auto micro_tokens = checked_mul(c.micro_batch, c.seq_len);
  if (!micro_tokens || *micro_tokens > kMaxTokens)
    m.error("micro_batch", "times seq_len (" + std::to_string(c.micro_batch) + " x " + std::to_string(c.seq_len) +
                               ") must be at most " + std::to_string(kMaxTokens) + " tokens");
  if (c.global_batch_tokens > 0 && c.global_batch_tokens % *micro_tokens != 0)
    m.error("global_batch_tokens", "(" + std::to_string(c.global_batch_tokens) +
                                        ") must be a multiple of micro_batch x seq_len (" +
                                        std::to_string(*micro_tokens) + ")");
  const int64_t step_tokens = c.global_batch_tokens > 0 ? c.global_batch_tokens : *micro_tokens;
  if (step_tokens > c.max_tokens) {
    if (c.global_batch_tokens > 0)
      m.error("global_batch_tokens", "(" + std::to_string(step_tokens) + ") exceeds max_tokens (" +
                                         std::to_string(c.max_tokens) + "): the run would not fill one optimizer step");
    m.error("max_tokens", "(" + std::to_string(c.max_tokens) + ") is less than one micro-batch (micro_batch x seq_len = " +
                              std::to_string(step_tokens) + " tokens)");
  }
  if (c.model.has(layer_char::kSlidingAttention) && c.model.attention.window > c.seq_len)
    m.error("seq_len", "(" + std::to_string(c.seq_len) + ") is shorter than the model's attention window (" +
                           std::to_string(c.model.attention.window) + ")");
}

// Every recipe key except the model (whose path the callers resolve differently).
void read_recipe_keys(YamlMap& m, TrainConfig& c) {
  m.read("data", c.data_dir);
  if (c.data_dir.empty()) m.error("data", "is required: a directory written by `samba data`");
  m.read("run_dir", c.run_dir);
  if (c.run_dir.empty()) m.error("run_dir", "is required: where checkpoints, logs and metrics go");
  int64_t seed = static_cast<int64_t>(c.seed);
  m.read("seed", seed, 0, kBig);
  c.seed = static_cast<uint64_t>(seed);
  m.read("seq_len", c.seq_len, 0, kMaxSeqLen);
  m.read("micro_batch", c.micro_batch, 1, 1 << 20);
  m.read("global_batch_tokens", c.global_batch_tokens, 0, kMaxTokens);
  m.read("max_tokens", c.max_tokens, 1, kMaxTokens);
  if (!m.has("max_tokens")) m.error("max_tokens", "is required: the training length in tokens (it sets the LR schedule)");
  read_optimizer(m.child("optimizer"), c.optimizer);
  read_distributed(m.child("distributed"), c.distributed);
  m.read_choice("precision", c.precision, {"auto", "fp32", "bf16"});
  m.read_choice("device", c.device, {"auto", "cpu", "cuda"});
  m.read("threads", c.threads, 0, 4096);
  m.read("log_every", c.log_every, 1, kMaxTokens);
  m.read("eval_every", c.eval_every, 0, kMaxTokens);
  m.read("eval_tokens", c.eval_tokens, 1, kMaxTokens);
  m.read("checkpoint_every", c.checkpoint_every, 0, kMaxTokens);
  m.read("keep_checkpoints", c.keep_checkpoints, 0, 1 << 20);
  m.read_choice("nan_policy", c.nan_policy, {"skip", "stop"});
  m.read("max_skipped_steps", c.max_skipped_steps, 1, kMaxTokens);
  m.read("peak_tflops", c.peak_tflops, 0.0, 1e9);
  m.read("deterministic", c.deterministic);
  m.finish();
}

}  // namespace

TrainConfig load_train_config(const std::string& path, const std::vector<std::string>& overrides) {
  TrainConfig c;
  c.source = path;
  std::vector<std::string> model_overrides, recipe_overrides;
  split_overrides(overrides, "model.", model_overrides, recipe_overrides);
  YAML::Node root = load_yaml_file(path);
  apply_overrides(root, recipe_overrides, path);
  YamlMap m(root, path);
  std::string model;
  m.read("model", model);
  if (model.empty()) m.error("model", "is required: the model YAML, e.g. model: ../models/tiny-samba.yaml");
  c.model_path = relative_to(path, model);
  if (!fs::exists(c.model_path))
    m.error("model", "file '" + c.model_path + "' does not exist (the path is relative to the recipe file)");
  if (fs::is_directory(c.model_path))
    m.error("model", "'" + c.model_path + "' is a directory; give a model YAML file, e.g. ../models/tiny-samba.yaml");
  read_recipe_keys(m, c);

  c.model = load_model_config(c.model_path, model_overrides, "model.");
  if (c.seq_len == 0) c.seq_len = c.model.seq_len;
  check_sizes(m, c);
  return c;
}

TrainConfig parse_stored_recipe(const std::string& yaml_text, const std::string& origin) {
  TrainConfig c;
  c.source = origin;
  YamlMap m(load_yaml_text(yaml_text, origin), origin);
  m.read("model", c.model_path);  // already resolved when it was stored; the file may be gone
  read_recipe_keys(m, c);
  return c;
}

std::string to_yaml(const TrainConfig& c) {
  YAML::Emitter e;
  e << YAML::BeginMap;
  e << YAML::Key << "model" << YAML::Value << c.model_path;
  e << YAML::Key << "data" << YAML::Value << c.data_dir;
  e << YAML::Key << "run_dir" << YAML::Value << c.run_dir;
  e << YAML::Key << "seed" << YAML::Value << c.seed;
  e << YAML::Key << "seq_len" << YAML::Value << c.seq_len;
  e << YAML::Key << "micro_batch" << YAML::Value << c.micro_batch;
  e << YAML::Key << "global_batch_tokens" << YAML::Value << c.accumulation_steps() * c.tokens_per_micro_batch();
  e << YAML::Key << "max_tokens" << YAML::Value << c.max_tokens;
  const auto& o = c.optimizer;
  e << YAML::Key << "optimizer" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "lr" << YAML::Value << o.lr << YAML::Key << "min_lr" << YAML::Value << o.min_lr;
  e << YAML::Key << "beta1" << YAML::Value << o.beta1 << YAML::Key << "beta2" << YAML::Value << o.beta2;
  e << YAML::Key << "eps" << YAML::Value << o.eps << YAML::Key << "weight_decay" << YAML::Value << o.weight_decay;
  e << YAML::Key << "warmup_fraction" << YAML::Value << o.warmup_fraction;
  e << YAML::Key << "grad_clip" << YAML::Value << o.grad_clip;
  e << YAML::EndMap;
  const auto& d = c.distributed;
  e << YAML::Key << "distributed" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "zero1" << YAML::Value << d.zero1 << YAML::Key << "bucket_mb" << YAML::Value << d.bucket_mb;
  e << YAML::Key << "timeout_s" << YAML::Value << d.timeout_s;
  e << YAML::EndMap;
  e << YAML::Key << "precision" << YAML::Value << c.precision;
  e << YAML::Key << "device" << YAML::Value << c.device;
  e << YAML::Key << "threads" << YAML::Value << c.threads;
  e << YAML::Key << "log_every" << YAML::Value << c.log_every;
  e << YAML::Key << "eval_every" << YAML::Value << c.eval_every;
  e << YAML::Key << "eval_tokens" << YAML::Value << c.eval_tokens;
  e << YAML::Key << "checkpoint_every" << YAML::Value << c.checkpoint_every;
  e << YAML::Key << "keep_checkpoints" << YAML::Value << c.keep_checkpoints;
  e << YAML::Key << "nan_policy" << YAML::Value << c.nan_policy;
  e << YAML::Key << "max_skipped_steps" << YAML::Value << c.max_skipped_steps;
  e << YAML::Key << "peak_tflops" << YAML::Value << c.peak_tflops;
  e << YAML::Key << "deterministic" << YAML::Value << c.deterministic;
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

}  // namespace samba
