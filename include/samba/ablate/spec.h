#pragma once
// An ablation file (`samba ablate <file.yaml>`): a list of runs, each a model config plus
// overrides trained with a recipe for a token budget, then evaluated. Read strictly like
// every other config: unknown keys, wrong types and impossible values are errors with
// file:line:col. The format is documented in docs/CONFIG.md ("Ablation files").
#include <cstdint>
#include <string>
#include <vector>

namespace samba::ablate {

struct DataSpec {
  std::string dir;  // dataset directory for every run ("" = each recipe's own `data:`)
  // Prepared with `samba data` when dataset.json is missing and `input` is set.
  std::string input;
  int64_t vocab_size = 4096;
  double val_fraction = 0.02;
};

struct EvalSpec {
  std::vector<int64_t> multiples{1, 2, 4};  // of the run's training length
  int64_t max_tokens = int64_t{4} << 20;    // scored at the longest length (samba eval --max-tokens)
  int64_t max_blocks = 0;                   // 0 = as many as max_tokens and the data allow
};

struct PasskeySpec {
  int64_t finetune_steps = 0;
  int64_t finetune_length = 0;  // 0 = the run's training length
  int64_t finetune_batch = 8;
  double lr = 1e-3;
  std::vector<int64_t> lengths;  // tokens; empty = 1x, 2x, 4x the training length
  int64_t depths = 11;
  int64_t trials = 5;
};

struct RunSpec {
  std::string name;    // directory name under out_dir
  std::string label;   // row of the results table (default: name)
  std::string model;   // model YAML ("" = the recipe's model)
  std::string recipe;  // training recipe YAML
  int64_t max_tokens = 0;        // token budget (0 = the recipe's max_tokens)
  std::vector<std::string> set;  // `samba train --set` overrides (model.* reach the model config)
  bool passkey = false;          // run the passkey evaluation too
};

struct AblationSpec {
  std::string source;   // the file
  std::string name;
  std::string out_dir;  // results.csv, results.md, plots/, one directory per run
  // Command put before `samba train ...` (e.g. a multi-GPU launcher that runs the rest of
  // the line once per rank); empty = run samba train directly.
  std::vector<std::string> train_launcher;
  DataSpec data;
  EvalSpec eval;
  PasskeySpec passkey;
  std::vector<RunSpec> runs;
};

// Paths of models and recipes are relative to the ablation file; out_dir, data.dir and
// data.input are relative to the working directory (like a recipe's run_dir and data).
AblationSpec load_ablation(const std::string& path);

}  // namespace samba::ablate
