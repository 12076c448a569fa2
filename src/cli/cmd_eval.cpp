#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "samba/ckpt/export.h"
#include "samba/cli/commands.h"
#include "samba/cli/flags.h"
#include "samba/core/error.h"
#include "samba/data/prepare.h"
#include "samba/eval/inputs.h"
#include "samba/eval/perplexity.h"
#include "samba/io/files.h"
#include "samba/runtime/device.h"

namespace samba::cli {

void add_eval_command(CLI::App& app) {
  struct Args {
    std::string model_dir, data, json;
    std::vector<int64_t> multiples{1, 2, 4};
    EvalOptions eval;
    std::string device = "auto";
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "eval", "validation perplexity at 1x, 2x, 4x the training length, on prefixes of the same held-out blocks");
  cmd->add_option("model", args->model_dir, "export directory, checkpoint directory or run directory")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--data", args->data, "dataset directory from `samba data` (default: the one the run trained on)");
  add_int_list_option(cmd, "--lengths", args->multiples, 1, kMaxContextMultiple,
                      "context lengths as multiples of the training length, e.g. 1,2,4");
  cmd->add_option("--max-tokens", args->eval.max_tokens,
                  "tokens scored at the longest length (blocks = this / longest; the data may hold fewer)")
      ->capture_default_str()
      ->check(int_in_range(1, kMaxFlagCount));
  cmd->add_option("--max-blocks", args->eval.max_blocks, "at most this many blocks (0 = no cap)")
      ->capture_default_str()
      ->check(int_in_range(0, kMaxFlagCount));
  cmd->add_option("--json", args->json, "also write the results to this JSON file");
  cmd->add_option("--device", args->device, "auto, cpu or cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->callback([args] {
    EvalInputs in = load_eval_inputs(args->model_dir, args->data);
    ckpt::LoadedModel& lm = in.model;
    const data::DatasetManifest& ds = in.dataset;
    const torch::Device device = runtime::pick_device(args->device);
    lm.model->to(device);
    EvalOptions eo = args->eval;
    eo.bf16 = device.is_cuda();
    eo.progress = true;
    std::vector<int64_t> contexts;
    for (int64_t m : args->multiples) {
      contexts.push_back(m * lm.config.seq_len);
    }
    const int64_t params = in.params;
    const int64_t blocks = perplexity_blocks(ds.val_paths(), contexts, eo);
    const int64_t longest = *std::max_element(contexts.begin(), contexts.end());
    std::printf("model %s (%s, %lld parameters), data %s\n", lm.config.name.c_str(), lm.source.c_str(),
                static_cast<long long>(params), ds.dir.c_str());
    std::printf("every length scores the prefixes of the same %lld held-out blocks of %lld tokens\n",
                static_cast<long long>(blocks), static_cast<long long>(longest + 1));
    std::vector<PerplexityResult> results = evaluate_prefix_perplexity(lm.model, ds.val_paths(), contexts, eo);
    std::printf("%9s %8s %7s %10s %9s %9s %10s %9s\n", "context", "x train", "blocks", "tokens", "loss", "+-se",
                "ppl", "+-se");
    nlohmann::json rows = nlohmann::json::array();
    for (size_t i = 0; i < results.size(); ++i) {
      const auto& r = results[i];
      std::printf("%9lld %7lldx %7lld %10lld %9.4f %9.4f %10.2f %9.2f\n", static_cast<long long>(r.context),
                  static_cast<long long>(args->multiples[i]), static_cast<long long>(r.blocks),
                  static_cast<long long>(r.tokens), r.loss, r.loss_se, r.ppl, r.ppl_se);
      rows.push_back({{"context", r.context}, {"multiple", args->multiples[i]}, {"blocks", r.blocks},
                      {"tokens", r.tokens}, {"loss", r.loss}, {"loss_se", r.loss_se}, {"ppl", r.ppl},
                      {"ppl_se", r.ppl_se}});
    }
    std::printf("unigram baseline ppl: %.2f\n", ds.unigram_val_ppl);
    if (!args->json.empty()) {
      nlohmann::json j{{"model", lm.config.name},     {"source", lm.source},       {"data", ds.dir},
                       {"seq_len", lm.config.seq_len}, {"params", params},         {"block_tokens", longest + 1},
                       {"results", rows},              {"unigram_ppl", ds.unigram_val_ppl}};
      io::write_file_atomic(args->json, j.dump(2) + "\n");
    }
  });
}

}  // namespace samba::cli
