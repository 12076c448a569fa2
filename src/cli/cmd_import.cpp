// `samba import`: a Hugging Face Llama / Mistral / Mamba checkpoint directory -> our export
// format, which eval, fine-tuning and export read (docs/FORMATS.md, "Import").
#include <CLI/CLI.hpp>

#include <cstdio>

#include "samba/cli/commands.h"
#include "samba/ckpt/export.h"

namespace samba::cli {

std::vector<int64_t> parse_token_list(const std::string& text, const char* flag);  // cmd_export.cpp

void add_import_command(CLI::App& app) {
  struct Args {
    std::string from, out, dtype = "float32", tokenizer, format = "samba", logits_for;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("import", "convert a Hugging Face Llama/Mistral/Mamba directory into a samba export");
  cmd->add_option("hf_dir", args->from, "directory with config.json and model.safetensors (or its index + shards)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--out", args->out, "output directory")->required();
  cmd->add_option("--format", args->format, "samba or hf")->check(CLI::IsMember({"samba", "hf"}))->capture_default_str();
  cmd->add_option("--dtype", args->dtype, "float32, bfloat16 or float16")
      ->check(CLI::IsMember({"float32", "bfloat16", "float16"}))
      ->capture_default_str();
  cmd->add_option("--tokenizer", args->tokenizer, "tokenizer.model to include (default: <hf_dir>/tokenizer.model)");
  cmd->add_option("--logits-for", args->logits_for, "comma-separated token ids: also write logits.safetensors");
  cmd->callback([args] {
    ckpt::ExportOptions eo;
    eo.dtype = args->dtype;
    eo.tokenizer_path = args->tokenizer;
    eo.format = args->format;
    if (!args->logits_for.empty()) eo.logits_tokens = parse_token_list(args->logits_for, "--logits-for");
    ckpt::import_hf(args->from, args->out, eo);
    std::printf("imported %s -> %s (format %s, %s)\n", args->from.c_str(), args->out.c_str(), args->format.c_str(),
                args->dtype.c_str());
  });
}

}  // namespace samba::cli
