#pragma once
// What changed between the recipe a run was started with and the one it is resumed with.
//
//   TrainConfig old_cfg = parse_stored_recipe(read_file(ckpt + "/train.yaml"), ckpt + "/train.yaml");
//   auto changes = recipe_changes(old_cfg, new_cfg);
//   if (breaks_data_order(changes) && !allow_recipe_change) fail(...format_changes(changes)...);
//   else log format_changes(changes) and record `changes` in the run (metrics/trainer state).
//
// kBreaksDataOrder: the continuation would read different batches than the run it claims to
//   continue (seed, data, seq_len, micro_batch, tokens per optimizer step): refuse unless the
//   user asks for it explicitly (--allow-recipe-change).
// kStated: legitimate for a continuation (a longer max_tokens, a new LR schedule for the
//   remainder, other cadences, precision/device): accept, but say so and record it.
#include <string>
#include <vector>

#include "samba/core/train_config.h"

namespace samba {

enum class RecipeChangeKind { kBreaksDataOrder, kStated };

struct RecipeChange {
  std::string key;        // dotted recipe key, e.g. "optimizer.lr"
  std::string old_value;  // as written in YAML
  std::string new_value;
  RecipeChangeKind kind;
  std::string effect;     // one phrase: "changes the data order", "changes the LR schedule", ...
};

// Keys in recipe order; empty when nothing changed. Compares resolved values (seq_len from the
// model, global_batch_tokens as tokens per optimizer step). run_dir is not compared (a run may
// be moved), nor the model config (the trainer compares model.yaml separately).
std::vector<RecipeChange> recipe_changes(const TrainConfig& old_cfg, const TrainConfig& new_cfg);

bool breaks_data_order(const std::vector<RecipeChange>& changes);

// One line per change: "  seed: 3407 -> 7 (changes the data order; needs --allow-recipe-change)".
std::string format_changes(const std::vector<RecipeChange>& changes);

}  // namespace samba
