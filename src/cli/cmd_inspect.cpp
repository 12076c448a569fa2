#include <CLI/CLI.hpp>

#include <iostream>

#include "samba/cli/commands.h"
#include "samba/core/config.h"
#include "samba/model/analysis.h"

namespace samba::cli {

void add_inspect_command(CLI::App& app) {
  struct Args {
    std::vector<std::string> configs;
    int64_t micro_batch = 1;
    bool fp32 = false;
    bool yaml = false;
    std::vector<std::string> overrides;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("inspect", "print a model's resolved layers, parameters, FLOPs/token and memory");
  cmd->add_option("config", args->configs, "model YAML file(s)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--micro-batch", args->micro_batch, "sequences per micro-batch for the memory estimate")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--set", args->overrides, "override a config value, KEY=VALUE (repeatable)")->allow_extra_args(false);
  cmd->add_flag("--fp32", args->fp32, "estimate activations in fp32 (CPU training) instead of bf16");
  cmd->add_flag("--yaml", args->yaml, "also print the resolved config as YAML");
  cmd->callback([args] {
    for (const auto& path : args->configs) {
      ModelConfig cfg = load_model_config(path, args->overrides);
      const int bytes = args->fp32 ? 4 : 2;
      std::cout << format_summary(cfg, summarize(cfg, args->micro_batch, bytes), args->micro_batch, bytes);
      if (args->yaml) std::cout << "\n# resolved config\n" << to_yaml(cfg);
      std::cout << "\n";
    }
  });
}

}  // namespace samba::cli
