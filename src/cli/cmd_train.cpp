#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>

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
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("train", "train a model from a recipe YAML (model + data + optimizer)");
  cmd->add_option("config", args->config, "training recipe, e.g. configs/train/tiny-samba-cpu.yaml")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_flag("--resume", args->resume, "continue from the newest complete checkpoint in run_dir");
  cmd->add_option("--stop-after-steps", args->stop_after, "checkpoint and stop after this many steps (0 = run to the end)")
      ->check(int_in_range(0, kMaxFlagCount));
  cmd->add_option("--set", args->overrides, "override a recipe value, KEY=VALUE (repeatable; model.KEY for the model)")
      ->allow_extra_args(false);
  cmd->add_flag("--no-progress", args->no_progress, "no progress bar (log lines only)");
  cmd->callback([args] {
    TrainConfig cfg = load_train_config(args->config, args->overrides);
    TrainOptions opts;
    opts.resume = args->resume;
    opts.stop_after_steps = args->stop_after;
    opts.progress = !args->no_progress;
    TrainResult r = train(cfg, opts);
    std::printf("\n%s after %lld steps (%lld tokens)\n", r.interrupted ? "interrupted" : "finished",
                static_cast<long long>(r.steps), static_cast<long long>(r.tokens));
    if (std::isfinite(r.val_ppl))
      std::printf("final eval: val loss %.4f, val ppl %.2f | unigram baseline ppl %.2f\n", r.val_loss, r.val_ppl,
                  r.unigram_ppl);
    if (!r.last_checkpoint.empty()) std::printf("checkpoint: %s\n", r.last_checkpoint.c_str());
    std::printf("logs: %s/train.log, metrics: %s/metrics.jsonl, TensorBoard: %s/tb\n", cfg.run_dir.c_str(),
                cfg.run_dir.c_str(), cfg.run_dir.c_str());
  });
}

}  // namespace samba::cli
