#include <CLI/CLI.hpp>

#include <cstdlib>

#include "samba/ablate/runner.h"
#include "samba/ablate/spec.h"
#include "samba/cli/commands.h"

namespace samba::cli {

void add_ablate_command(CLI::App& app) {
  struct Args {
    std::string file;
    ablate::RunnerOptions runner;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "ablate", "train and evaluate every run of an ablation file; rerun to resume; writes results.md/csv and plots");
  cmd->add_option("ablation", args->file, "ablation YAML, e.g. configs/ablations/table3-tiny.yaml")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--only", args->runner.only, "only these runs (comma-separated names)")->delimiter(',');
  cmd->add_flag("--report", args->runner.report_only, "only rebuild results.md, results.csv and plots from disk");
  cmd->add_option("--device", args->runner.device, "device for eval and passkey: auto, cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->callback([args] {
    const ablate::AblationSpec spec = ablate::load_ablation(args->file);
    const int rc = ablate::run_ablation(spec, args->runner);
    // 1: some runs failed (named above); 130: interrupted, rerun to continue.
    if (rc != 0) std::exit(rc);
  });
}

}  // namespace samba::cli
