#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "samba/ckpt/export.h"
#include "samba/cli/commands.h"
#include "samba/cli/flags.h"
#include "samba/core/error.h"
#include "samba/data/prepare.h"
#include "samba/eval/perplexity.h"
#include "samba/runtime/device.h"

namespace samba::cli {
namespace fs = std::filesystem;

namespace {

// The dataset a checkpoint was trained on, from its trainer.json; "" when unknown.
std::string dataset_of(const std::string& source) {
  const fs::path trainer = fs::path(source) / "trainer.json";
  if (!fs::exists(trainer)) return "";
  try {
    std::ifstream in(trainer);
    auto j = nlohmann::json::parse(in);
    return j.value("dataset_dir", "");
  } catch (const std::exception&) {
    return "";
  }
}

}  // namespace

void add_eval_command(CLI::App& app) {
  struct Args {
    std::string model_dir, data;
    std::vector<int64_t> multiples{1, 2, 4};
    int64_t max_tokens = 65536;
    std::string device = "auto";
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("eval", "validation perplexity at 1x, 2x, 4x the training length");
  cmd->add_option("model", args->model_dir, "export directory, checkpoint directory or run directory")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--data", args->data, "dataset directory from `samba data` (default: the one the run trained on)");
  add_int_list_option(cmd, "--lengths", args->multiples, 1, kMaxContextMultiple,
                      "context lengths as multiples of the training length, e.g. 1,2,4");
  cmd->add_option("--max-tokens", args->max_tokens, "validation tokens per length")->check(int_in_range(1, kMaxFlagCount));
  cmd->add_option("--device", args->device, "auto, cpu or cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->callback([args] {
    ckpt::LoadedModel lm = ckpt::load_model(args->model_dir);
    std::string data_dir = args->data.empty() ? dataset_of(lm.source) : args->data;
    check(!data_dir.empty(), args->model_dir, " does not say which data it was trained on: pass --data <dataset dir>");
    data::DatasetManifest ds = data::load_dataset_manifest(data_dir);
    const torch::Device device = runtime::pick_device(args->device);
    lm.model->to(device);
    EvalOptions eo;
    eo.max_tokens = args->max_tokens;
    eo.bf16 = device.is_cuda();
    eo.progress = true;
    std::printf("model %s (%s), data %s\n", lm.config.name.c_str(), lm.source.c_str(), ds.dir.c_str());
    std::printf("%10s %10s %10s %10s %10s\n", "context", "x train", "tokens", "loss", "ppl");
    for (int64_t m : args->multiples) {
      check(m > 0, "--lengths takes positive multiples, e.g. 1,2,4");
      const int64_t ctx = m * lm.config.seq_len;
      PerplexityResult r = evaluate_perplexity(lm.model, ds.val_paths(), ctx, eo);
      std::printf("%10lld %9lldx %10lld %10.4f %10.2f\n", static_cast<long long>(ctx), static_cast<long long>(m),
                  static_cast<long long>(r.tokens), r.loss, r.ppl);
    }
    std::printf("unigram baseline ppl: %.2f\n", ds.unigram_val_ppl);
  });
}

}  // namespace samba::cli
