#include "samba/train/components.h"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>

#include "samba/ckpt/checkpoint.h"
#include "samba/core/error.h"
#include "samba/core/log.h"
#include "samba/core/progress.h"
#include "samba/io/files.h"
#include "samba/io/jsonl.h"
#include "samba/io/safetensors.h"
#include "samba/io/tensorboard.h"
#include "samba/model/analysis.h"
#include "samba/runtime/device.h"

namespace samba {
namespace fs = std::filesystem;

// ---------------------------------------------------------------- TrainState

nlohmann::json TrainState::to_json() const {
  return {{"step", step},
          {"tokens", tokens},
          {"data_cursor", cursor.to_json()},
          {"skipped_in_a_row", skipped_in_a_row},
          {"world", world},
          {"global_batch_windows", global_batch_windows},
          {"zero1", zero1},
          {"recipe_changes", recipe_changes}};
}

TrainState TrainState::from_json(const nlohmann::json& j, const std::string& where) {
  auto integer = [&](const char* key, int64_t fallback, bool required) -> int64_t {
    if (!j.contains(key)) {
      check(!required, where, ": no \"", key, "\"; the checkpoint is damaged, resume from an earlier one");
      return fallback;
    }
    check(j.at(key).is_number_integer() && j.at(key).get<int64_t>() >= 0, where, ": \"", key,
          "\" must be a non-negative integer, got ", j.at(key).dump());
    return j.at(key).get<int64_t>();
  };
  TrainState s;
  s.step = integer("step", 0, true);
  s.tokens = integer("tokens", 0, true);
  check(j.contains("data_cursor"), where, ": no \"data_cursor\"; the checkpoint is damaged");
  s.cursor = data::Cursor::from_json(j.at("data_cursor"), where);
  s.skipped_in_a_row = integer("skipped_in_a_row", 0, false);
  s.world = static_cast<int>(integer("world", 1, false));  // v1 checkpoints: one process
  s.global_batch_windows = integer("global_batch_windows", 0, false);
  s.zero1 = j.value("zero1", false);
  if (j.contains("recipe_changes") && j.at("recipe_changes").is_array()) s.recipe_changes = j.at("recipe_changes");
  return s;
}

// ---------------------------------------------------------------- BatchPrefetcher

BatchPrefetcher::BatchPrefetcher(data::PackedLoader& loader, int64_t micro_batch, int depth)
    : loader_(loader),
      micro_batch_(micro_batch),
      depth_(static_cast<size_t>(std::max(depth, 1))),
      consumed_(loader.cursor()),
      thread_([this] { run(); }) {}

BatchPrefetcher::~BatchPrefetcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void BatchPrefetcher::run() {
  try {
    // Plain host memory: no CUDA call on this thread (the step stages the batch in pinned
    // memory on its own thread, a 100-KB copy, then copies it to the GPU asynchronously).
    const auto opts = torch::TensorOptions(torch::kInt32);
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || ready_.size() < depth_; });
        if (stop_) return;
      }
      std::vector<int32_t> rows = loader_.next_batch(micro_batch_);
      check(rows.size() == static_cast<size_t>(micro_batch_ * (loader_.seq_len() + 1)),
            "BatchPrefetcher: the loader returned a short batch (", rows.size() / (loader_.seq_len() + 1), " of ",
            micro_batch_, " rows): it needs a training-mode loader, which never runs out");
      // The tensor takes the rows' memory (no copy); it frees them when the last reference goes.
      auto owned = std::make_unique<std::vector<int32_t>>(std::move(rows));
      std::vector<int32_t>* raw = owned.get();
      auto batch = torch::from_blob(
          raw->data(), {micro_batch_, loader_.seq_len() + 1}, [raw](void*) { delete raw; }, opts);
      owned.release();  // the tensor's deleter owns it now
      const data::Cursor after = loader_.cursor();
      {
        std::lock_guard<std::mutex> lock(mu_);
        ready_.emplace_back(std::move(batch), after);
      }
      cv_.notify_all();
    }
  } catch (...) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = std::current_exception();
    }
    cv_.notify_all();
  }
}

torch::Tensor BatchPrefetcher::next() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !ready_.empty() || error_; });
  if (ready_.empty()) std::rethrow_exception(error_);  // batches read before the error go first
  auto [batch, after] = std::move(ready_.front());
  ready_.pop_front();
  consumed_ = after;
  lock.unlock();
  cv_.notify_all();
  return batch;
}

data::Cursor BatchPrefetcher::cursor() const {
  std::lock_guard<std::mutex> lock(mu_);
  return consumed_;
}

// ---------------------------------------------------------------- StopSignals

namespace {
std::atomic<int> g_stop_signal{0};
struct sigaction g_old_term {}, g_old_int {}, g_old_hup {};

void on_stop_signal(int sig) {
  g_stop_signal.store(sig);
  // A second Ctrl-C should kill a run that is stuck, so restore the default action.
  ::signal(sig, SIG_DFL);
}
}  // namespace

StopSignals::StopSignals() {
  g_stop_signal.store(0);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, &g_old_term);
  sigaction(SIGINT, &sa, &g_old_int);
  sigaction(SIGHUP, &sa, &g_old_hup);  // a closed terminal or ssh session checkpoints too
}

StopSignals::~StopSignals() {
  sigaction(SIGTERM, &g_old_term, nullptr);
  sigaction(SIGINT, &g_old_int, nullptr);
  sigaction(SIGHUP, &g_old_hup, nullptr);
}

int StopSignals::received() const { return g_stop_signal.load(); }

const char* StopSignals::name(int sig) {
  switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGHUP: return "SIGHUP";
    default: return "a stop signal";
  }
}

// ---------------------------------------------------------------- FaultInjector

namespace {
int64_t env_int(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long long x = std::strtoll(v, &end, 10);
  check(end && *end == '\0', name, "='", v, "' is not an integer; unset it or give a step number");
  return x;
}
}  // namespace

FaultInjector::FaultInjector(int rank) {
  nan_step_ = env_int("SAMBA_FAULT_NAN_STEP", -1);
  const int64_t nan_rank = env_int("SAMBA_FAULT_NAN_RANK", -1);
  nan_here_ = nan_rank < 0 || nan_rank == rank;
  exit_step_ = env_int("SAMBA_FAULT_EXIT_STEP", -1);
  const int64_t exit_rank = env_int("SAMBA_FAULT_EXIT_RANK", -1);
  exit_here_ = exit_rank < 0 || exit_rank == rank;
}

bool FaultInjector::poison_loss(int64_t step) const { return nan_here_ && step == nan_step_; }

void FaultInjector::maybe_exit_after(int64_t step) const {
  if (exit_here_ && step == exit_step_) {
    spdlog::error("fault injection: exiting after step {} (SAMBA_FAULT_EXIT_STEP)", step);
    std::_Exit(3);
  }
}

// ---------------------------------------------------------------- MetricsSink

namespace {
std::string format_eta(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  char buf[32];
  const int s = static_cast<int>(seconds);
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%dh%02dm", s / 3600, (s / 60) % 60);
  else std::snprintf(buf, sizeof buf, "%dm%02ds", s / 60, s % 60);
  return buf;
}

// A resumed run recomputes the steps after its checkpoint: drop their old records so that
// metrics.jsonl holds each step once.
void truncate_metrics_after(const fs::path& path, int64_t step) {
  if (!fs::exists(path)) return;
  std::string kept, line;
  const std::string text = io::read_file(path.string());
  size_t dropped = 0, pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) break;  // a partial last line from a crash
    line = text.substr(pos, nl - pos);
    pos = nl + 1;
    bool keep = true;
    try {
      auto j = nlohmann::json::parse(line);
      keep = !(j.contains("step") && j["step"].is_number_integer() && j["step"].get<int64_t>() > step);
    } catch (const nlohmann::json::exception&) {
      keep = false;
    }
    if (keep) kept += line + "\n";
    else ++dropped;
  }
  if (dropped > 0 || pos < text.size()) {
    io::write_file_atomic(path.string(), kept);
    spdlog::info("metrics.jsonl: dropped {} records after step {} (they are recomputed now)", dropped, step);
  }
}
}  // namespace

MetricsSink::MetricsSink(const TrainConfig& cfg, bool writer, bool resumed, int64_t resumed_step, int64_t total_steps,
                         bool progress, double flops_per_token, double peak_flops, const torch::Device& device)
    : cfg_(cfg), writer_(writer), total_steps_(total_steps), first_step_(resumed_step),
      flops_per_token_(flops_per_token), peak_(peak_flops), device_(device) {
  run_start_ = window_start_ = std::chrono::steady_clock::now();
  if (!writer_) return;
  const fs::path metrics = fs::path(cfg.run_dir) / "metrics.jsonl";
  if (resumed) truncate_metrics_after(metrics, resumed_step);
  jsonl_ = std::make_unique<io::JsonlWriter>(metrics.string(), /*append=*/resumed);
  events_ = std::make_unique<io::EventWriter>((fs::path(cfg.run_dir) / "tb").string());
  if (progress) {
    progress_ = std::make_unique<Progress>("train", static_cast<uint64_t>(total_steps), ProgressOptions{"steps"});
    progress_->update(static_cast<uint64_t>(resumed_step));
  }
}

MetricsSink::~MetricsSink() = default;

void MetricsSink::step(const TrainState& s, const StepOutcome& o, double lr, int64_t tokens_per_step) {
  window_tokens_ += tokens_per_step;
  window_comm_s_ += o.comm_exposed_s;
  window_steps_ += 1;
  if (!writer_) return;
  const double tok_s = static_cast<double>(tokens_per_step) / std::max(o.seconds, 1e-9);
  const double mfu = flops_per_token_ * tok_s / peak_;
  nlohmann::json rec = {{"step", s.step},   {"tokens", s.tokens},        {"loss", o.loss},
                        {"lr", lr},         {"grad_norm", o.grad_norm},  {"tokens_per_s", tok_s},
                        {"mfu", mfu},       {"step_s", o.seconds},       {"comm_exposed_s", o.comm_exposed_s}};
  if (o.skipped) rec["skipped"] = true;
  jsonl_->write(rec);
  events_->add_scalar("train/loss", static_cast<float>(o.loss), s.step);
  events_->add_scalar("train/lr", static_cast<float>(lr), s.step);
  events_->add_scalar("train/grad_norm", static_cast<float>(o.grad_norm), s.step);
  events_->add_scalar("train/tokens_per_s", static_cast<float>(tok_s), s.step);
  if (progress_) {
    char post[128];
    std::snprintf(post, sizeof post, "loss %.3f lr %.2e", o.loss, lr);
    progress_->set_postfix(post);
    progress_->update(static_cast<uint64_t>(s.step));
  }
  if (s.step % cfg_.log_every == 0 || s.step == total_steps_) {
    const auto now = std::chrono::steady_clock::now();
    const double window_s = std::chrono::duration<double>(now - window_start_).count();
    const double avg_tok_s = static_cast<double>(window_tokens_) / std::max(window_s, 1e-9);
    const double run_s = std::chrono::duration<double>(now - run_start_).count();
    const double eta = run_s / static_cast<double>(std::max<int64_t>(1, s.step - first_step_)) *
                       static_cast<double>(total_steps_ - s.step);
    spdlog::info("step {}/{} | loss {:.4f} | lr {:.3e} | grad norm {:.3f} | {:.0f} tok/s | MFU {:.1f}% | comm {:.1f} ms/step | mem {} | ETA {}",
                 s.step, total_steps_, o.loss, lr, o.grad_norm, avg_tok_s, 100.0 * flops_per_token_ * avg_tok_s / peak_,
                 1e3 * window_comm_s_ / static_cast<double>(std::max<int64_t>(1, window_steps_)),
                 human_bytes(runtime::memory_in_use_bytes(device_)), format_eta(eta));
    window_start_ = now;
    window_tokens_ = 0;
    window_comm_s_ = 0;
    window_steps_ = 0;
  }
}

void MetricsSink::eval(const TrainState& s, double loss, double ppl, int64_t tokens, double unigram_ppl) {
  if (!writer_) return;
  jsonl_->write({{"step", s.step}, {"tokens", s.tokens}, {"val_loss", loss}, {"val_ppl", ppl},
                 {"val_tokens", tokens}, {"unigram_ppl", unigram_ppl}});
  events_->add_scalar("val/loss", static_cast<float>(loss), s.step);
  events_->add_scalar("val/ppl", static_cast<float>(ppl), s.step);
  spdlog::info("eval step {}: val loss {:.4f}, ppl {:.2f} over {} tokens (unigram baseline ppl {:.2f})", s.step, loss,
               ppl, tokens, unigram_ppl);
}

void MetricsSink::finish() {
  if (progress_) progress_->finish();
  if (events_) events_->flush();
}

// ---------------------------------------------------------------- Evaluator

Evaluator::Evaluator(std::vector<std::string> val_shards, int64_t seq_len, int64_t max_tokens, int64_t batch,
                     runtime::Communicator& comm, bool bf16)
    : shards_(std::move(val_shards)), seq_len_(seq_len), max_tokens_(max_tokens), batch_(batch), comm_(comm),
      bf16_(bf16) {}

Evaluator::Result Evaluator::run(LanguageModel& model) {
  const int rank = comm_.rank(), world = comm_.world();
  // Shards were verified when the run started; a sequential pass needs no second check.
  auto loader = data::PackedLoader::sequential(shards_, seq_len_, 0, 1, /*verify=*/false);
  const int64_t windows = std::min<int64_t>(std::max<int64_t>(1, max_tokens_ / seq_len_),
                                            static_cast<int64_t>(loader.num_windows()));
  const auto device = model->embed->weight.device();
  torch::NoGradGuard no_grad;
  model->eval();
  auto sums = torch::zeros({2}, torch::TensorOptions().dtype(torch::kFloat64).device(device));
  std::vector<int32_t> rows;
  const int64_t row = seq_len_ + 1;
  // Rank r takes windows r, r + world, ...: a fixed set whatever the world size.
  for (int64_t first = rank; first < windows; first += batch_ * world) {
    rows.clear();
    for (int64_t w = first; w < windows && static_cast<int64_t>(rows.size()) < batch_ * row; w += world) {
      rows.resize(rows.size() + static_cast<size_t>(row));
      loader.read_window(static_cast<uint64_t>(w), rows.data() + rows.size() - row);
    }
    const int64_t got = static_cast<int64_t>(rows.size()) / row;
    auto t = torch::from_blob(rows.data(), {got, row}, torch::kInt32).to(device, torch::kLong);
    runtime::AutocastScope autocast(device, bf16_);
    // The training loss's chunked LM head + cross-entropy: the (tokens x vocab) fp32 logits
    // (4.2 GB for samba-421m's batch of 8 x 4096) never exist. No target is ignored, so the
    // mean times the token count is the sum.
    const auto mean = model->loss(t.slice(1, 0, seq_len_), t.slice(1, 1, row));
    sums[0] += mean.to(torch::kFloat64) * static_cast<double>(got * seq_len_);
    sums[1] += static_cast<double>(got * seq_len_);
  }
  model->train();
  comm_.all_reduce(sums, runtime::ReduceOp::Sum);
  auto host = sums.cpu();
  Result r;
  r.tokens = static_cast<int64_t>(host[1].item<double>());
  r.loss = host[0].item<double>() / static_cast<double>(std::max<int64_t>(1, r.tokens));
  r.ppl = std::exp(r.loss);
  return r;
}

// ---------------------------------------------------------------- Checkpointer

namespace {
std::string first_difference(const std::string& a, const std::string& b) {
  std::istringstream sa(a), sb(b);
  std::string la, lb;
  while (true) {
    const bool ga = static_cast<bool>(std::getline(sa, la));
    const bool gb = static_cast<bool>(std::getline(sb, lb));
    if (!ga && !gb) return "";
    if (!ga || !gb || la != lb)
      return "checkpoint has '" + (ga ? la : "<end>") + "', the config has '" + (gb ? lb : "<end>") + "'";
  }
}

torch::Tensor rng_bytes(const at::Generator& g) { return g.get_state().clone(); }

// Spans as [[logical, length, offset], ...] for the manifest.
nlohmann::json spans_json(const std::vector<SavedOptimizerShard::Span>& spans) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& s : spans) a.push_back({s.logical, s.length, s.offset});
  return a;
}
}  // namespace

Checkpointer::Checkpointer(const TrainConfig& cfg, runtime::Communicator& comm, const torch::Device& device)
    : cfg_(cfg), comm_(comm), device_(device), root_((fs::path(cfg.run_dir) / "checkpoints").string()) {}

bool Checkpointer::due(int64_t step) const { return cfg_.checkpoint_every > 0 && step % cfg_.checkpoint_every == 0; }

std::string Checkpointer::save(const TrainState& s, torch::nn::Module& model, const AdamW& optimizer, bool zero1,
                               const nlohmann::json& extra, const std::string& reason) {
  if (s.step == on_disk_step_) return last_;
  const bool rank0 = comm_.rank() == 0;
  ckpt::CheckpointContent c;
  // Moments: every rank's shard under ZeRO-1; otherwise rank 0 holds the (replicated) state.
  const bool store_moments = zero1 || rank0;
  if (store_moments) {
    c.optimizer.emplace_back("exp_avg", optimizer.exp_avg());
    c.optimizer.emplace_back("exp_avg_sq", optimizer.exp_avg_sq());
  }
  c.optimizer.emplace_back("rng.cpu", rng_bytes(at::detail::getDefaultCPUGenerator()));
  if (device_.is_cuda()) c.optimizer.emplace_back("rng.cuda", rng_bytes(at::globalContext().defaultGenerator(device_)));
  c.rank_meta = {{"steps_taken", optimizer.steps_taken()},
                 {"spans", store_moments ? spans_json(optimizer.spans()) : nlohmann::json::array()}};
  if (rank0) {
    c.model = ckpt::module_state(model);
    c.trainer_state = s.to_json();
    for (auto it = extra.begin(); it != extra.end(); ++it) c.trainer_state[it.key()] = it.value();
    c.trainer_state["reason"] = reason;
    c.model_config_yaml = to_yaml(cfg_.model);
    c.train_config_yaml = to_yaml(cfg_);
  }
  last_ = ckpt::save_checkpoint(root_, s.step, c, static_cast<int>(cfg_.keep_checkpoints), &comm_);
  on_disk_step_ = s.step;
  spdlog::info("checkpoint step {} -> {} ({})", s.step, last_, reason);
  return last_;
}

TrainState Checkpointer::load(const std::string& dir, torch::nn::Module& model, AdamW& optimizer,
                              const dist::FlatParameters& flat, const std::string& model_yaml,
                              std::string* saved_recipe) {
  ckpt::Checkpoint c = ckpt::load_checkpoint(dir);
  const std::string diff = first_difference(c.model_config_yaml, model_yaml);
  check(diff.empty(), "cannot resume from ", dir, ": it was trained with a different model config (", diff,
        "). Use the same model YAML, or a new run_dir to start a different model");
  std::map<std::string, torch::Tensor> weights(c.model.begin(), c.model.end());
  ckpt::load_state_into(model, weights, dir);

  // Optimizer moments from every saved rank file, whatever world size wrote them.
  std::vector<std::shared_ptr<io::SafetensorsFile>> files;
  std::vector<SavedOptimizerShard> shards;
  int64_t steps_taken = -1;
  std::map<std::string, torch::Tensor> v1;  // version 1: per-parameter moments
  for (const auto& rf : c.ranks) {
    if (c.version == 1) {
      v1 = ckpt::load_tensors(rf.path);
      auto it = v1.find("__step__");
      check(it != v1.end(), dir, ": optimizer state has no step counter");
      steps_taken = it->second.item<int64_t>();
      for (const auto& slot : flat.slots()) {
        for (const char* which : {"exp_avg", "exp_avg_sq"}) {
          auto t = v1.find(slot.name + "." + which);
          check(t != v1.end() && t->second.numel() == slot.numel, dir, ": optimizer state has no '", slot.name, ".",
                which, "' of ", slot.numel, " values: the checkpoint was written for a different model");
          t->second = t->second.to(torch::kFloat32).contiguous().view({-1});
        }
        SavedOptimizerShard sh;
        sh.origin = rf.path;
        sh.spans.push_back({slot.logical, slot.numel, 0});
        const std::string name = slot.name;
        sh.read = [&v1, name](const char* which, int64_t off, int64_t len, float* out) {
          std::memcpy(out, v1.at(name + "." + which).data_ptr<float>() + off, static_cast<size_t>(len) * sizeof(float));
        };
        shards.push_back(std::move(sh));
      }
      continue;
    }
    const auto& spans = rf.meta.value("spans", nlohmann::json::array());
    if (rf.meta.contains("steps_taken") && !spans.empty()) steps_taken = rf.meta["steps_taken"].get<int64_t>();
    if (spans.empty()) continue;
    auto file = std::make_shared<io::SafetensorsFile>(rf.path);
    for (const char* which : {"exp_avg", "exp_avg_sq"})
      check(file->contains(which) && file->info(which).dtype == "F32", rf.path, ": no F32 tensor '", which,
            "'; the checkpoint is damaged, resume from an earlier one");
    SavedOptimizerShard sh;
    sh.origin = rf.path;
    const int64_t n = file->info("exp_avg").shape.empty() ? 0 : file->info("exp_avg").shape[0];
    for (const auto& sp : spans) {
      check(sp.is_array() && sp.size() == 3, rf.path, ": malformed shard span in the manifest");
      SavedOptimizerShard::Span s{sp[0].get<int64_t>(), sp[1].get<int64_t>(), sp[2].get<int64_t>()};
      check(s.length >= 0 && s.offset >= 0 && s.offset + s.length <= n, rf.path, ": shard span past the end of ",
            "its moments; the checkpoint is damaged");
      sh.spans.push_back(s);
    }
    sh.read = [file](const char* which, int64_t off, int64_t len, float* out) {
      std::memcpy(out, static_cast<const float*>(file->data(which)) + off, static_cast<size_t>(len) * sizeof(float));
    };
    files.push_back(file);
    shards.push_back(std::move(sh));
  }
  check(steps_taken >= 0, dir, ": no rank file holds optimizer moments; the checkpoint is damaged");
  optimizer.load_state(shards, steps_taken);

  // This rank's RNG, when the writer had a rank of this number (same world size).
  const int rank = comm_.rank();
  if (c.version == 2 && rank < static_cast<int>(c.ranks.size())) {
    io::SafetensorsFile mine(c.ranks[static_cast<size_t>(rank)].path);
    auto restore = [&](const char* name, at::Generator g) {
      if (!mine.contains(name)) return;
      const auto& info = mine.info(name);
      auto t = torch::empty({static_cast<int64_t>(info.nbytes)}, torch::kUInt8);
      std::memcpy(t.data_ptr(), mine.data(name), info.nbytes);
      g.set_state(t);
    };
    restore("rng.cpu", at::detail::getDefaultCPUGenerator());
    if (device_.is_cuda()) restore("rng.cuda", at::globalContext().defaultGenerator(device_));
  } else if (c.version == 1 && c.trainer_state.contains("rng_state")) {
    auto bytes = c.trainer_state.at("rng_state").get<std::vector<uint8_t>>();
    auto state = torch::from_blob(bytes.data(), {static_cast<int64_t>(bytes.size())}, torch::kUInt8).clone();
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    gen.set_state(state);
  }
  if (saved_recipe) *saved_recipe = c.train_config_yaml;
  last_ = dir;
  TrainState s = TrainState::from_json(c.trainer_state, dir + "/trainer.json");
  on_disk_step_ = s.step;
  return s;
}

}  // namespace samba
