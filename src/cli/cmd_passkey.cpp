#include <CLI/CLI.hpp>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "samba/cli/commands.h"
#include "samba/core/error.h"
#include "samba/data/tokenizer.h"
#include "samba/eval/inputs.h"
#include "samba/eval/passkey.h"
#include "samba/eval/plot.h"
#include "samba/io/files.h"
#include "samba/runtime/device.h"

namespace samba::cli {

void add_passkey_command(CLI::App& app) {
  struct Args {
    std::string model_dir, data, json, svg, device = "auto";
    PasskeyFinetuneOptions finetune;
    std::vector<int64_t> lengths;
    int64_t depths = 11, trials = 5;
    uint64_t seed = 1234;
  };
  auto args = std::make_shared<Args>();
  args->finetune.steps = 0;
  auto* cmd = app.add_subcommand(
      "passkey", "passkey retrieval: optional fine-tune on passkey documents, then the accuracy grid (length x depth)");
  cmd->add_option("model", args->model_dir, "export directory, checkpoint directory or run directory")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--data", args->data, "dataset directory (for the tokenizer; default: the one the run trained on)");
  cmd->add_option("--finetune-steps", args->finetune.steps, "fine-tune steps on passkey documents first (0 = none)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--finetune-length", args->finetune.length, "tokens per fine-tune document (0 = training length)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--finetune-batch", args->finetune.batch, "documents per fine-tune step")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--lr", args->finetune.lr, "fine-tune learning rate")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--lengths", args->lengths, "document lengths in tokens (default: 1x, 2x, 4x the training length)")
      ->delimiter(',')
      ->check(CLI::PositiveNumber);
  cmd->add_option("--depths", args->depths, "needle depths, evenly spaced from 0 to 1")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{101}));
  cmd->add_option("--trials", args->trials, "documents per grid cell")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{100000}));
  cmd->add_option("--seed", args->seed, "seed of the keys and depths")->capture_default_str();
  cmd->add_option("--json", args->json, "write the grid to this JSON file");
  cmd->add_option("--svg", args->svg, "draw the grid as a heat map (SVG) here");
  cmd->add_option("--device", args->device, "auto, cpu or cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->callback([args] {
    EvalInputs in = load_eval_inputs(args->model_dir, args->data);
    auto tok = std::make_shared<data::Tokenizer>(data::Tokenizer::load(in.dataset.tokenizer));
    PasskeyGenerator gen([tok](const std::string& s) { return tok->encode(s); }, in.dataset.eos_id, args->seed);
    auto& model = in.model.model;
    model->to(runtime::pick_device(args->device));
    const int64_t seq = in.model.config.seq_len;
    std::vector<int64_t> lengths = args->lengths;
    if (lengths.empty()) lengths = {seq, 2 * seq, 4 * seq};
    for (int64_t l : lengths)
      check(l >= gen.min_length(), "--lengths: ", l, " tokens cannot hold the passkey prompt; use at least ",
            gen.min_length());
    std::printf("model %s (%s, %lld parameters), tokenizer %s\n", in.model.config.name.c_str(),
                in.model.source.c_str(), static_cast<long long>(in.params), in.dataset.tokenizer.c_str());
    std::vector<double> ft_losses;
    const int64_t ft_length = args->finetune.length > 0 ? args->finetune.length : seq;
    if (args->finetune.steps > 0) {
      check(ft_length >= gen.min_length(), "--finetune-length ", ft_length, " cannot hold the passkey prompt; use at least ",
            gen.min_length());
      ft_losses = finetune_passkey(model, gen, args->finetune);
      std::printf("fine-tuned %lld steps x %lld documents of %lld tokens: answer loss %.3f -> %.3f\n",
                  static_cast<long long>(args->finetune.steps), static_cast<long long>(args->finetune.batch),
                  static_cast<long long>(ft_length), ft_losses.front(), ft_losses.back());
    }
    PasskeyGrid g = evaluate_passkey(model, gen, lengths, even_depths(args->depths), args->trials, true);
    std::printf("passkey accuracy (%%), %lld documents per cell\n%8s", static_cast<long long>(g.trials), "depth");
    for (int64_t l : g.lengths) std::printf(" %7lld", static_cast<long long>(l));
    std::printf("\n");
    for (size_t d = 0; d < g.depths.size(); ++d) {
      std::printf("%8.2f", g.depths[d]);
      for (double a : g.accuracy[d]) std::printf(" %7.0f", 100 * a);
      std::printf("\n");
    }
    std::printf("mean accuracy: %.1f%%\n", 100 * g.mean());
    if (!args->svg.empty()) {
      plot::Heatmap h;
      h.title = "Passkey retrieval: " + in.model.config.name;
      h.x_label = "document length (tokens)";
      h.y_label = "needle depth";
      for (int64_t l : g.lengths) h.columns.push_back(std::to_string(l));
      for (double d : g.depths) {
        char buf[16];
        std::snprintf(buf, sizeof buf, "%.2f", d);
        h.rows.push_back(buf);
      }
      h.values = g.accuracy;
      plot::write_svg(args->svg, plot::heatmap_svg(h));
      std::printf("heat map: %s\n", args->svg.c_str());
    }
    if (!args->json.empty()) {
      nlohmann::json j{{"model", in.model.config.name}, {"params", in.params},   {"lengths", g.lengths},
                       {"depths", g.depths},            {"trials", g.trials},    {"accuracy", g.accuracy},
                       {"mean", g.mean()},              {"finetune_steps", args->finetune.steps},
                       {"finetune_length", ft_length},  {"finetune_losses", ft_losses}};
      io::write_file_atomic(args->json, j.dump(2) + "\n");
    }
  });
}

}  // namespace samba::cli
