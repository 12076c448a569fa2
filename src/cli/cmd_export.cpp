// `samba export`: a checkpoint (or a freshly initialised model) -> our format or a Hugging
// Face class's layout (docs/FORMATS.md, "Export").
#include <CLI/CLI.hpp>

#include <cstdio>

#include "samba/cli/commands.h"
#include "samba/ckpt/export.h"
#include "samba/core/error.h"

namespace samba::cli {

// "1,5,9" -> {1, 5, 9}; an empty or malformed item is an error naming the flag.
std::vector<int64_t> parse_token_list(const std::string& text, const char* flag) {
  std::vector<int64_t> out;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    check(!item.empty() && item.find_first_not_of("0123456789") == std::string::npos, flag, " '", text,
          "': '", item, "' is not a token id; give comma-separated non-negative integers, e.g. 1,42,7");
    check(item.size() <= 12, flag, ": token id '", item, "' is too large");
    out.push_back(std::stoll(item));
    start = comma + 1;
  }
  return out;
}

void add_export_command(CLI::App& app) {
  struct Args {
    std::string from, out, dtype = "float32", tokenizer, format = "samba", init_config, logits_for;
    uint64_t seed = 0;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("export", "write model.safetensors + config.json + tokenizer for other tools");
  cmd->add_option("checkpoint", args->from, "checkpoint directory or run directory (newest checkpoint)")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--init", args->init_config, "export a freshly initialised model of this model YAML instead")
      ->check(CLI::ExistingFile);
  cmd->add_option("--seed", args->seed, "torch seed for --init")->capture_default_str();
  cmd->add_option("--out", args->out, "output directory")->required();
  cmd->add_option("--format", args->format,
                  "samba (ours, any pattern) or hf (transformers Llama/Mistral/Mamba or FLA Samba names and config)")
      ->check(CLI::IsMember({"samba", "hf"}))
      ->capture_default_str();
  cmd->add_option("--dtype", args->dtype, "float32, bfloat16 or float16")
      ->check(CLI::IsMember({"float32", "bfloat16", "float16"}))
      ->capture_default_str();
  cmd->add_option("--tokenizer", args->tokenizer, "tokenizer.model to include (default: the one the run used)");
  cmd->add_option("--logits-for", args->logits_for,
                  "comma-separated token ids: also write logits.safetensors (our logits on them) for checking loaders");
  cmd->callback([args] {
    check(args->from.empty() != args->init_config.empty(),
          "export: give either a checkpoint/run directory or --init <model.yaml>, not ", args->from.empty() ? "neither" : "both");
    ckpt::ExportOptions eo;
    eo.dtype = args->dtype;
    eo.tokenizer_path = args->tokenizer;
    eo.format = args->format;
    if (!args->logits_for.empty()) eo.logits_tokens = parse_token_list(args->logits_for, "--logits-for");
    if (!args->init_config.empty())
      ckpt::export_initialised(args->init_config, args->seed, args->out, eo);
    else
      ckpt::export_model(args->from, args->out, eo);
    std::printf("exported %s -> %s (format %s, %s)\n", args->from.empty() ? args->init_config.c_str() : args->from.c_str(),
                args->out.c_str(), args->format.c_str(), args->dtype.c_str());
  });
}

}  // namespace samba::cli
