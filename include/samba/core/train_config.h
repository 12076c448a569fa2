#pragma once
// The training recipe (`samba train <train.yaml>`): which model, which data, how long and how.
// Strict like the model config: unknown keys and impossible values are errors naming the key.
#include <cstdint>
#include <string>
#include <vector>

#include "samba/core/config.h"

namespace samba {

struct OptimizerConfig {
  double lr = 4e-4;        // peak learning rate
  double min_lr = 4e-5;    // cosine floor
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  double warmup_fraction = 0.01;  // of the total tokens
  double grad_clip = 1.0;         // max global grad norm; 0 = off
};

// Data-parallel settings (ignored by a single process).
struct DistributedConfig {
  bool zero1 = false;        // shard AdamW moments and master weights over ranks (ZeRO stage 1)
  double bucket_mb = 25;     // gradient bucket size: smaller overlaps earlier, larger means fewer calls
  int64_t timeout_s = 600;   // a collective stuck this long (dead or hung rank) ends every rank
};

struct TrainConfig {
  std::string source;       // the YAML file
  std::string model_path;   // resolved path of the model YAML
  ModelConfig model;
  std::string data_dir;     // directory written by `samba data` (dataset.json)
  std::string run_dir;      // checkpoints, logs, metrics
  uint64_t seed = 3407;
  int64_t seq_len = 0;             // 0 = the model's seq_len
  int64_t micro_batch = 8;         // sequences per forward/backward
  int64_t global_batch_tokens = 0; // tokens per optimizer step; 0 = one micro-batch (no accumulation)
  int64_t max_tokens = 0;          // training length in tokens (sets the LR schedule)
  OptimizerConfig optimizer;
  DistributedConfig distributed;
  std::string precision = "auto";  // auto (bf16 autocast on GPU, fp32 on CPU), fp32, bf16
  std::string device = "auto";     // auto, cpu, cuda
  int64_t threads = 0;             // CPU intra-op threads; 0 = torch's default
  int64_t log_every = 10;          // optimizer steps
  int64_t eval_every = 0;          // 0 = only at the end
  int64_t eval_tokens = 65536;     // validation tokens per evaluation
  int64_t checkpoint_every = 100;  // optimizer steps; 0 = only at the end / on signal
  int64_t keep_checkpoints = 3;
  std::string nan_policy = "skip"; // skip the step, or stop the run
  int64_t max_skipped_steps = 10;  // consecutive non-finite steps before stopping anyway
  bool deterministic = false;      // deterministic algorithms everywhere (bitwise-reproducible GPU runs)
  double peak_tflops = 0;          // device peak for MFU; 0 = H100 bf16 dense on GPU, measured on CPU

  int64_t tokens_per_micro_batch() const { return micro_batch * seq_len; }
  int64_t accumulation_steps() const;
  int64_t total_steps() const;
};

// `overrides` are "key=value" strings (`--set`, core/overrides.h): keys under "model." go to the
// model config, the rest to the recipe; both are validated like values written in the files.
TrainConfig load_train_config(const std::string& path, const std::vector<std::string>& overrides = {});
// The resolved recipe written by to_yaml (stored as train.yaml in every checkpoint), read back
// for comparison on --resume (core/recipe_diff.h). The model file is not loaded (`model`
// stays empty; compare model configs separately); seq_len and global_batch_tokens are the
// resolved values.
TrainConfig parse_stored_recipe(const std::string& yaml_text, const std::string& origin);
std::string to_yaml(const TrainConfig& cfg);

}  // namespace samba
