#include <CLI/CLI.hpp>

#include <iostream>

#include "samba/cli/commands.h"
#include "samba/core/config.h"
#include "samba/dist/memory_plan.h"
#include "samba/model/analysis.h"

namespace samba::cli {

void add_inspect_command(CLI::App& app) {
  struct Args {
    std::vector<std::string> configs;
    int64_t micro_batch = 1;
    bool fp32 = false;
    bool yaml = false;
    std::vector<std::string> overrides;
    int world = 0;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("inspect", "print a model's resolved layers, parameters, FLOPs/token and memory");
  cmd->add_option("config", args->configs, "model YAML file(s)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--micro-batch", args->micro_batch, "sequences per micro-batch for the memory estimate")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--set", args->overrides, "override a config value, KEY=VALUE (repeatable)")->allow_extra_args(false);
  cmd->add_flag("--fp32", args->fp32, "estimate activations in fp32 (CPU training) instead of bf16");
  cmd->add_flag("--yaml", args->yaml, "also print the resolved config as YAML");
  cmd->add_option("--world", args->world, "also print memory per GPU for data parallelism on 1..N GPUs, with and without ZeRO-1")
      ->check(CLI::Range(1, 1 << 20));
  cmd->callback([args] {
    for (const auto& path : args->configs) {
      ModelConfig cfg = load_model_config(path, args->overrides);
      const int bytes = args->fp32 ? 4 : 2;
      const ModelSummary summary = summarize(cfg, args->micro_batch, bytes);
      std::cout << format_summary(cfg, summary, args->micro_batch, bytes);
      if (args->world > 0) {
        std::vector<int> worlds;
        for (int w = 1; w < args->world; w *= 2) worlds.push_back(w);
        worlds.push_back(args->world);
        std::cout << dist::format_rank_memory(summary, worlds);
      }
      if (args->yaml) std::cout << "\n# resolved config\n" << to_yaml(cfg);
      std::cout << "\n";
    }
  });
}

}  // namespace samba::cli
