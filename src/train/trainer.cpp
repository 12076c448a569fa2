#include "samba/train/trainer.h"

#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <limits>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "samba/ckpt/checkpoint.h"
#include "samba/core/error.h"
#include "samba/core/log.h"
#include "samba/core/progress.h"
#include "samba/data/loader.h"
#include "samba/data/prepare.h"
#include "samba/eval/perplexity.h"
#include "samba/io/jsonl.h"
#include "samba/io/tensorboard.h"
#include "samba/model/analysis.h"
#include "samba/model/model.h"
#include "samba/optim/adamw.h"
#include "samba/train/precision.h"

namespace samba {
namespace fs = std::filesystem;

namespace {

std::atomic<int> g_stop_signal{0};

void on_stop_signal(int sig) {
  g_stop_signal.store(sig);
  // A second Ctrl-C should kill a run that is stuck, so restore the default action.
  ::signal(sig, SIG_DFL);
}

// Installs SIGTERM/SIGINT handlers for the lifetime of a training run.
class StopSignals {
 public:
  StopSignals() {
    g_stop_signal.store(0);
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, &old_term_);
    sigaction(SIGINT, &sa, &old_int_);
  }
  ~StopSignals() {
    sigaction(SIGTERM, &old_term_, nullptr);
    sigaction(SIGINT, &old_int_, nullptr);
  }
  int received() const { return g_stop_signal.load(); }

 private:
  struct sigaction old_term_ {}, old_int_ {};
};

std::string first_difference(const std::string& a, const std::string& b) {
  std::istringstream sa(a), sb(b);
  std::string la, lb;
  while (true) {
    const bool ga = static_cast<bool>(std::getline(sa, la));
    const bool gb = static_cast<bool>(std::getline(sb, lb));
    if (!ga && !gb) return "";
    if (!ga || !gb || la != lb) return "checkpoint has '" + (ga ? la : "<end>") + "', the config has '" + (gb ? lb : "<end>") + "'";
  }
}

std::string format_eta(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  char buf[32];
  const int s = static_cast<int>(seconds);
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%dh%02dm", s / 3600, (s / 60) % 60);
  else std::snprintf(buf, sizeof buf, "%dm%02ds", s / 60, s % 60);
  return buf;
}

}  // namespace

std::string checkpoint_root(const TrainConfig& cfg) { return (fs::path(cfg.run_dir) / "checkpoints").string(); }

TrainResult train(const TrainConfig& cfg, const TrainOptions& options) {
  fs::create_directories(cfg.run_dir);
  init_logging((fs::path(cfg.run_dir) / "train.log").string());
  const torch::Device device = pick_device(cfg.device);
  const bool bf16 = cfg.precision == "bf16" || (cfg.precision == "auto" && device.is_cuda());
  check(!bf16 || device.is_cuda(), cfg.source, ": precision bf16 needs a GPU (CPU training runs in fp32); use precision: auto");
  if (cfg.threads > 0) torch::set_num_threads(static_cast<int>(cfg.threads));

  // --- data ---
  const data::DatasetManifest dataset = data::load_dataset_manifest(cfg.data_dir);
  check(cfg.model.vocab_size >= dataset.vocab_size, cfg.model.source, ": vocab_size ", cfg.model.vocab_size,
        " is smaller than the tokenizer's ", dataset.vocab_size, " (", dataset.tokenizer,
        "): set vocab_size to at least ", dataset.vocab_size);
  data::LoaderOptions lo;
  lo.seq_len = cfg.seq_len;
  lo.seed = cfg.seed;
  data::PackedLoader loader(dataset.train_paths(), lo);
  check(loader.num_windows() >= static_cast<uint64_t>(cfg.micro_batch), cfg.data_dir, ": the training split has only ",
        loader.num_windows(), " windows of ", cfg.seq_len, " tokens, fewer than one micro-batch (", cfg.micro_batch, ")");

  // --- model and optimizer ---
  torch::manual_seed(cfg.seed);
  LanguageModel model(cfg.model);
  model->to(device);
  model->train();
  std::vector<std::pair<std::string, torch::Tensor>> named;
  std::vector<torch::Tensor> params;
  for (const auto& p : model->named_parameters()) {
    named.emplace_back(p.key(), p.value());
    params.push_back(p.value());
  }
  AdamW optimizer(named, cfg.optimizer);
  const ModelSummary summary = summarize(cfg.model, cfg.micro_batch, bf16 ? 2 : 4);
  const int64_t total_steps = cfg.total_steps();
  const int64_t accum = cfg.accumulation_steps();
  const int64_t tokens_per_step = accum * cfg.tokens_per_micro_batch();
  const std::string model_yaml = to_yaml(cfg.model);

  // --- resume ---
  int64_t step = 0, tokens = 0;
  TrainResult result;
  result.unigram_ppl = dataset.unigram_val_ppl;
  const std::string ckpt_root = checkpoint_root(cfg);
  if (options.resume) {
    const std::string latest = ckpt::find_latest_checkpoint(ckpt_root);
    if (latest.empty()) {
      spdlog::info("--resume: no complete checkpoint in {}, starting from scratch", ckpt_root);
    } else {
      ckpt::CheckpointContent c = ckpt::load_checkpoint(latest);
      const std::string diff = first_difference(c.model_config_yaml, model_yaml);
      check(diff.empty(), "cannot resume from ", latest, ": it was trained with a different model config (", diff,
            "). Use the same model YAML, or a new run_dir to start a different model");
      std::map<std::string, torch::Tensor> weights(c.model.begin(), c.model.end());
      ckpt::load_state_into(*model, weights, latest);
      optimizer.load_state(c.optimizer, latest);
      step = c.trainer_state.at("step").get<int64_t>();
      tokens = c.trainer_state.at("tokens").get<int64_t>();
      loader.restore(data::Cursor::from_json(c.trainer_state.at("data_cursor"), latest + "/trainer.json"));
      if (c.trainer_state.contains("rng_state")) {
        auto bytes = c.trainer_state.at("rng_state").get<std::vector<uint8_t>>();
        auto state = torch::from_blob(bytes.data(), {static_cast<int64_t>(bytes.size())}, torch::kUInt8).clone();
        torch::manual_seed(cfg.seed);
        auto gen = at::detail::getDefaultCPUGenerator();
        gen.set_state(state);
      }
      spdlog::info("resumed from {} at step {} ({} tokens)", latest, step, tokens);
      result.last_checkpoint = latest;
    }
  }

  spdlog::info("model {}: {} parameters ({} non-embedding), {:.3f} GFLOP/token training; device {}, {}",
               cfg.model.name, summary.total_params, summary.non_embedding_params,
               summary.training_flops_per_token / 1e9, device.str(), bf16 ? "bf16 autocast" : "fp32");
  spdlog::info("data {}: {} train tokens, {} windows of {}; {} steps of {} tokens ({} x {} x {} accumulation)",
               cfg.data_dir, loader.total_tokens(), loader.num_windows(), cfg.seq_len, total_steps, tokens_per_step,
               cfg.micro_batch, cfg.seq_len, accum);
  const double peak = cfg.peak_tflops > 0 ? cfg.peak_tflops * 1e12 : peak_flops(device, bf16);

  io::JsonlWriter metrics((fs::path(cfg.run_dir) / "metrics.jsonl").string(), /*append=*/options.resume);
  io::EventWriter events((fs::path(cfg.run_dir) / "tb").string());

  int64_t saved_step = -1;
  auto save = [&](const char* why) {
    ckpt::CheckpointContent c;
    c.model = ckpt::module_state(*model);
    c.optimizer = optimizer.state();
    auto rng = at::detail::getDefaultCPUGenerator().get_state();
    std::vector<uint8_t> rng_bytes(rng.data_ptr<uint8_t>(), rng.data_ptr<uint8_t>() + rng.numel());
    c.trainer_state = {{"step", step},
                       {"tokens", tokens},
                       {"total_steps", total_steps},
                       {"data_cursor", loader.cursor().to_json()},
                       {"rng_state", rng_bytes},
                       {"tokenizer_path", dataset.tokenizer},
                       {"dataset_dir", dataset.dir},
                       {"model_name", cfg.model.name},
                       {"reason", why}};
    c.model_config_yaml = model_yaml;
    c.train_config_yaml = to_yaml(cfg);
    result.last_checkpoint = ckpt::save_checkpoint(ckpt_root, step, c, static_cast<int>(cfg.keep_checkpoints));
    saved_step = step;
    spdlog::info("checkpoint step {} -> {} ({})", step, result.last_checkpoint, why);
  };

  auto evaluate = [&]() {
    EvalOptions eo;
    eo.max_tokens = cfg.eval_tokens;
    eo.batch_tokens = cfg.tokens_per_micro_batch();
    eo.bf16 = bf16;
    PerplexityResult r = evaluate_perplexity(model, dataset.val_paths(), cfg.seq_len, eo);
    result.val_loss = r.loss;
    result.val_ppl = r.ppl;
    metrics.write({{"step", step}, {"tokens", tokens}, {"val_loss", r.loss}, {"val_ppl", r.ppl},
                   {"unigram_ppl", dataset.unigram_val_ppl}});
    events.add_scalar("val/loss", static_cast<float>(r.loss), step);
    events.add_scalar("val/ppl", static_cast<float>(r.ppl), step);
    spdlog::info("eval step {}: val loss {:.4f}, ppl {:.2f} over {} tokens (unigram baseline ppl {:.2f})", step, r.loss,
                 r.ppl, r.tokens, dataset.unigram_val_ppl);
  };

  StopSignals signals;
  std::unique_ptr<Progress> progress;
  if (options.progress) {
    progress = std::make_unique<Progress>("train", static_cast<uint64_t>(total_steps), ProgressOptions{"steps"});
    progress->update(static_cast<uint64_t>(step));
  }
  int64_t skipped_in_a_row = 0;
  // Fault injection for tests: SAMBA_FAULT_NAN_STEP=k makes step k's loss NaN.
  const char* fault_env = std::getenv("SAMBA_FAULT_NAN_STEP");
  const int64_t fault_nan_step = fault_env ? std::atoll(fault_env) : -1;
  const auto run_start = std::chrono::steady_clock::now();
  auto window_start = run_start;
  int64_t window_tokens = 0;
  const int64_t first_step = step;

  while (step < total_steps) {
    const auto step_start = std::chrono::steady_clock::now();
    optimizer.zero_grad();
    double loss_sum = 0;
    for (int64_t micro = 0; micro < accum; ++micro) {
      std::vector<int32_t> rows = loader.next_batch(cfg.micro_batch);
      auto batch = torch::from_blob(rows.data(), {cfg.micro_batch, cfg.seq_len + 1}, torch::kInt32)
                       .to(device, torch::kLong);
      torch::Tensor loss;
      {
        AutocastScope autocast(device, bf16);
        loss = model->loss(batch.slice(1, 0, cfg.seq_len), batch.slice(1, 1, cfg.seq_len + 1));
      }
      (loss / static_cast<double>(accum)).backward();
      loss_sum += loss.item<double>();
    }
    // Data-parallel hook: all-reduce gradients (and the loss) across ranks here.
    double loss = loss_sum / static_cast<double>(accum);
    if (step + 1 == fault_nan_step) loss = std::numeric_limits<double>::quiet_NaN();
    const double grad_norm = clip_grad_norm(params, cfg.optimizer.grad_clip);
    const double lr = learning_rate(cfg.optimizer, step, total_steps);
    if (!std::isfinite(loss) || !std::isfinite(grad_norm)) {
      ++skipped_in_a_row;
      const std::string what = !std::isfinite(loss) ? "loss" : "gradient norm";
      check(cfg.nan_policy == "skip", "step ", step + 1, ": non-finite ", what, " (loss ", loss, ", grad norm ",
            grad_norm, "); stopping (nan_policy: stop). Lower the learning rate or resume from the last checkpoint");
      check(skipped_in_a_row <= cfg.max_skipped_steps, "step ", step + 1, ": ", skipped_in_a_row,
            " non-finite steps in a row; stopping. Lower the learning rate or check the data");
      spdlog::warn("step {}: non-finite {} (loss {}, grad norm {}); skipping this update", step + 1, what, loss,
                   grad_norm);
      optimizer.zero_grad();
    } else {
      skipped_in_a_row = 0;
      optimizer.step(lr);
    }
    ++step;
    tokens += tokens_per_step;
    window_tokens += tokens_per_step;
    result.last_loss = loss;

    const auto now = std::chrono::steady_clock::now();
    const double step_s = std::chrono::duration<double>(now - step_start).count();
    const double tok_s = static_cast<double>(tokens_per_step) / std::max(step_s, 1e-9);
    const double mfu = summary.training_flops_per_token * tok_s / peak;
    metrics.write({{"step", step}, {"tokens", tokens}, {"loss", loss}, {"lr", lr}, {"grad_norm", grad_norm},
                   {"tokens_per_s", tok_s}, {"mfu", mfu}, {"step_s", step_s}});
    events.add_scalar("train/loss", static_cast<float>(loss), step);
    events.add_scalar("train/lr", static_cast<float>(lr), step);
    events.add_scalar("train/grad_norm", static_cast<float>(grad_norm), step);
    events.add_scalar("train/tokens_per_s", static_cast<float>(tok_s), step);
    if (progress) {
      char post[128];
      std::snprintf(post, sizeof post, "loss %.3f lr %.2e", loss, lr);
      progress->set_postfix(post);
      progress->update(static_cast<uint64_t>(step));
    }
    if (step % cfg.log_every == 0 || step == total_steps) {
      const double window_s = std::chrono::duration<double>(now - window_start).count();
      const double avg_tok_s = static_cast<double>(window_tokens) / std::max(window_s, 1e-9);
      const double run_s = std::chrono::duration<double>(now - run_start).count();
      const double eta = run_s / static_cast<double>(step - first_step) * static_cast<double>(total_steps - step);
      spdlog::info("step {}/{} | loss {:.4f} | lr {:.3e} | grad norm {:.3f} | {:.0f} tok/s | MFU {:.1f}% | mem {} | ETA {}",
                   step, total_steps, loss, lr, grad_norm, avg_tok_s,
                   100.0 * summary.training_flops_per_token * avg_tok_s / peak,
                   human_bytes(memory_in_use_bytes(device)), format_eta(eta));
      window_start = now;
      window_tokens = 0;
    }
    if (cfg.eval_every > 0 && step % cfg.eval_every == 0 && step < total_steps) evaluate();
    if (const int sig = signals.received()) {
      spdlog::warn("received {}: writing a checkpoint and stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      save(sig == SIGTERM ? "SIGTERM" : "SIGINT");
      result.interrupted = true;
      break;
    }
    if (options.stop_after_steps > 0 && step - first_step >= options.stop_after_steps) {
      save("stop_after_steps");
      break;
    }
    if (cfg.checkpoint_every > 0 && step % cfg.checkpoint_every == 0 && step < total_steps) save("periodic");
  }
  if (progress) progress->finish();
  result.steps = step;
  result.tokens = tokens;
  if (step >= total_steps && !result.interrupted) {
    if (saved_step != step) save("final");  // --stop-after-steps may have just saved this step
    evaluate();
  }
  events.flush();
  return result;
}

}  // namespace samba
