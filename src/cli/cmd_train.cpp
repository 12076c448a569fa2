#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "samba/cli/commands.h"
#include "samba/cli/flags.h"
#include "samba/core/train_config.h"
#include "samba/train/trainer.h"

namespace samba::cli {

void add_train_command(CLI::App& app) {
  struct Args {
    std::string config;
    bool resume = false;
    int64_t stop_after = 0;
    bool no_progress = false;
    std::vector<std::string> overrides;
    bool overwrite = false;
    bool allow_recipe_change = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("train", "train a model from a recipe YAML (model + data + optimizer); under "
                                          "torchrun, SLURM or mpirun every process runs this, one per GPU");
  cmd->add_option("config", args->config, "training recipe, e.g. configs/train/tiny-samba-cpu.yaml")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_flag("--resume", args->resume, "continue from the newest complete checkpoint in run_dir (any number of ranks)");
  cmd->add_option("--stop-after-steps", args->stop_after, "checkpoint and stop after this many steps (0 = run to the end)")
      ->check(int_in_range(0, kMaxFlagCount));
  cmd->add_option("--set", args->overrides, "override a recipe value, KEY=VALUE (repeatable; model.KEY for the model)")
      ->allow_extra_args(false);
  cmd->add_flag("--no-progress", args->no_progress, "no progress bar (log lines only)");
  cmd->add_flag("--overwrite", args->overwrite, "start a fresh run even if run_dir holds an older run");
  cmd->add_flag("--allow-recipe-change", args->allow_recipe_change,
                "let --resume change settings that alter the data order or the batch (seed, micro_batch, ...)");
  cmd->callback([args] {
    TrainConfig cfg = load_train_config(args->config, args->overrides);
    TrainOptions opts;
    opts.resume = args->resume;
    opts.stop_after_steps = args->stop_after;
    opts.progress = !args->no_progress;
    opts.overwrite = args->overwrite;
    opts.allow_recipe_change = args->allow_recipe_change;
    TrainResult r = train(cfg, opts);
    if (r.rank != 0) return;  // rank 0 speaks for the run
    std::printf("\n%s after %lld steps (%lld tokens)%s\n", r.interrupted ? "interrupted" : (r.diverged ? "diverged" : "finished"),
                static_cast<long long>(r.steps), static_cast<long long>(r.tokens),
                r.world > 1 ? (" on " + std::to_string(r.world) + " ranks").c_str() : "");
    if (std::isfinite(r.val_ppl))
      std::printf("final eval: val loss %.4f, val ppl %.2f | unigram baseline ppl %.2f\n", r.val_loss, r.val_ppl,
                  r.unigram_ppl);
    if (!r.last_checkpoint.empty()) std::printf("checkpoint: %s\n", r.last_checkpoint.c_str());
    std::printf("logs: %s/train.log, metrics: %s/metrics.jsonl, TensorBoard: %s/tb\n", cfg.run_dir.c_str(),
                cfg.run_dir.c_str(), cfg.run_dir.c_str());
    if (r.diverged) {
      std::fflush(stdout);
      std::fprintf(stderr, "error: the run diverged: its final validation loss %.4f (ppl %.2f) is no better than "
                           "where it started. Lower the learning rate (optimizer.lr) and train again\n",
                   r.val_loss, r.val_ppl);
      std::exit(4);
    }
  });
}

}  // namespace samba::cli
