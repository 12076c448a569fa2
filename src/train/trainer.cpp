#include "samba/train/trainer.h"

#include <chrono>
#include <cstdlib>
#include <cmath>
#include <filesystem>
#include <limits>
#include <memory>

#include "samba/ckpt/checkpoint.h"
#include "samba/core/error.h"
#include "samba/core/log.h"
#include "samba/core/recipe_diff.h"
#include "samba/data/loader.h"
#include "samba/data/prepare.h"
#include "samba/dist/flat_params.h"
#include "samba/dist/grad_reducer.h"
#include "samba/io/files.h"
#include "samba/io/run_dir.h"
#include "samba/model/analysis.h"
#include "samba/model/model.h"
#include "samba/optim/adamw.h"
#include "samba/runtime/comm.h"
#include "samba/runtime/launch_env.h"
#include "samba/train/components.h"
#include "samba/runtime/device.h"

namespace samba {
namespace fs = std::filesystem;

std::string checkpoint_root(const TrainConfig& cfg) { return (fs::path(cfg.run_dir) / "checkpoints").string(); }

namespace {

// The trainer: the run's components, and the loop that strings them together.
class Trainer {
 public:
  Trainer(const TrainConfig& cfg, const TrainOptions& options);
  TrainResult run();

 private:
  // What a step leaves for drain(): its statistics still on the device, float64
  // {loss, grad_norm, stop_signal, applied}, and the host-side wait for the reduction.
  struct DeviceStep {
    torch::Tensor stats;
    double comm_exposed_s = 0;
  };
  DeviceStep train_step();
  bool drain();
  void save(const char* reason);
  void claim_run_dir();
  void check_recipe_changes(const std::string& checkpoint, const std::string& saved_recipe);

  const TrainConfig& cfg_;
  TrainOptions options_;
  runtime::LaunchEnv env_;
  torch::Device device_;
  std::unique_ptr<runtime::Communicator> comm_;
  std::unique_ptr<io::RunLock> lock_;  // rank 0: this process owns run_dir
  bool bf16_ = false;
  bool zero1_ = false;
  data::DatasetManifest dataset_;
  std::unique_ptr<data::PackedLoader> loader_;
  std::unique_ptr<BatchPrefetcher> batches_;  // owns loader_ while the loop runs (declared after it)
  LanguageModel model_{nullptr};
  std::unique_ptr<dist::FlatParameters> flat_;
  std::unique_ptr<dist::GradReducer> reducer_;
  std::unique_ptr<AdamW> optimizer_;
  std::unique_ptr<Checkpointer> checkpointer_;
  std::unique_ptr<Evaluator> evaluator_;
  std::unique_ptr<MetricsSink> metrics_;
  std::unique_ptr<FaultInjector> faults_;
  StopSignals signals_;
  TrainState state_;
  int64_t accum_ = 1, total_steps_ = 1, tokens_per_step_ = 0;
  TrainResult result_;
  double first_loss_ = std::numeric_limits<double>::quiet_NaN();  // this process's first finite step
  // Steps whose statistics are still on the device (read by drain()).
  struct PendingStep {
    torch::Tensor stats;
    int64_t step, tokens;
    double lr, comm_exposed_s;
  };
  std::vector<PendingStep> pending_;
  std::chrono::steady_clock::time_point last_drain_ = std::chrono::steady_clock::now();
};

Trainer::Trainer(const TrainConfig& cfg, const TrainOptions& options)
    : cfg_(cfg), options_(options), env_(runtime::detect_launch_env()), device_(runtime::pick_device(cfg.device, env_)) {
  const bool rank0 = env_.rank == 0;
  init_logging("", rank0 ? "info" : "warn");
  if (cfg.deterministic) runtime::use_deterministic_algorithms();
  if (device_.is_cuda()) torch::cuda::manual_seed_all(cfg.seed);  // touches the device before NCCL
  runtime::CommOptions co;
  co.timeout = std::chrono::seconds(cfg.distributed.timeout_s);
  // SAMBA_COMM_FORCE_GROUP=1: a real NCCL/Gloo group, hooks and collectives even for one
  // process, so the data-parallel path can be exercised (and timed) on a one-GPU machine.
  const bool force_group = std::getenv("SAMBA_COMM_FORCE_GROUP") != nullptr;
  co.force_group = force_group;
  comm_ = runtime::Communicator::create(env_, device_, co);
  claim_run_dir();
  if (rank0) init_logging((fs::path(cfg.run_dir) / "train.log").string(), "info");
  if (env_.distributed()) spdlog::info("data parallel: {}", env_.describe());
  bf16_ = cfg.precision == "bf16" || (cfg.precision == "auto" && device_.is_cuda());
  check(!bf16_ || device_.is_cuda(), cfg.source, ": precision bf16 needs a GPU (CPU training runs in fp32); use precision: auto");
  if (cfg.threads > 0) torch::set_num_threads(static_cast<int>(cfg.threads));
  const int world = comm_->world();
  zero1_ = cfg.distributed.zero1 && (world > 1 || force_group);

  // --- batch geometry: the global batch is fixed by the recipe, whatever the world size ---
  const int64_t per_micro = cfg.tokens_per_micro_batch();
  const int64_t global_tokens = cfg.global_batch_tokens > 0 ? cfg.global_batch_tokens : per_micro * world;
  check(global_tokens % (per_micro * world) == 0, cfg.source, ": global_batch_tokens ", global_tokens,
        " is not a multiple of micro_batch x seq_len x ranks = ", cfg.micro_batch, " x ", cfg.seq_len, " x ", world,
        " = ", per_micro * world, ". Fix: change micro_batch, or run on a number of ranks that divides ",
        global_tokens / per_micro, " micro-batches");
  accum_ = global_tokens / (per_micro * world);
  tokens_per_step_ = global_tokens;
  total_steps_ = std::max<int64_t>(1, (cfg.max_tokens + tokens_per_step_ - 1) / tokens_per_step_);

  // --- data ---
  dataset_ = data::load_dataset_manifest(cfg.data_dir);
  check(cfg.model.vocab_size >= dataset_.vocab_size, cfg.model.source, ": vocab_size ", cfg.model.vocab_size,
        " is smaller than the tokenizer's ", dataset_.vocab_size, " (", dataset_.tokenizer,
        "): set vocab_size to at least ", dataset_.vocab_size);
  data::LoaderOptions lo;
  lo.seq_len = cfg.seq_len;
  lo.seed = cfg.seed;
  lo.rank = comm_->rank();
  lo.world = world;
  loader_ = std::make_unique<data::PackedLoader>(dataset_.train_paths(), lo);
  check(loader_->num_windows() >= static_cast<uint64_t>(cfg.micro_batch), cfg.data_dir, ": the training split has only ",
        loader_->num_windows(), " windows of ", cfg.seq_len, " tokens, fewer than one micro-batch (", cfg.micro_batch, ")");

  // --- model, flat buffers, reducer, optimizer (same seed on every rank, then rank 0's weights everywhere) ---
  torch::manual_seed(cfg.seed);
  model_ = LanguageModel(cfg.model);
  model_->to(device_);
  model_->train();
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (const auto& p : model_->named_parameters()) named.emplace_back(p.key(), p.value());
  dist::FlatOptions fo;
  fo.world = world;
  fo.bucket_bytes = static_cast<int64_t>(cfg.distributed.bucket_mb * 1024 * 1024);
  flat_ = std::make_unique<dist::FlatParameters>(named, fo);
  comm_->broadcast(flat_->params(), 0);
  reducer_ = std::make_unique<dist::GradReducer>(*flat_, *comm_, zero1_, /*always=*/force_group);
  optimizer_ = std::make_unique<AdamW>(*flat_, flat_->ranges_of(comm_->rank(), zero1_), cfg.optimizer);
  checkpointer_ = std::make_unique<Checkpointer>(cfg, *comm_, device_);
  evaluator_ = std::make_unique<Evaluator>(dataset_.val_paths(), cfg.seq_len, cfg.eval_tokens, cfg.micro_batch,
                                           *comm_, bf16_);
  faults_ = std::make_unique<FaultInjector>(comm_->rank());
  state_.world = world;
  state_.global_batch_windows = global_tokens / cfg.seq_len;
  state_.zero1 = zero1_;
  state_.cursor = loader_->cursor();

  // --- resume ---
  result_.unigram_ppl = dataset_.unigram_val_ppl;
  result_.rank = comm_->rank();
  result_.world = world;
  bool resumed = false;
  if (options.resume) {
    std::vector<std::string> skipped;
    const std::string latest = ckpt::find_latest_checkpoint(checkpointer_->root(), &skipped);
    for (const auto& s : skipped)
      spdlog::warn("--resume: skipping {}: it is incomplete (the run stopped while writing it)", s);
    if (latest.empty()) {
      spdlog::info("--resume: no complete checkpoint in {}, starting from scratch", checkpointer_->root());
    } else {
      std::string saved_recipe;
      TrainState saved = checkpointer_->load(latest, *model_, *optimizer_, *flat_, to_yaml(cfg.model), &saved_recipe);
      if (saved.global_batch_windows > 0)
        check(saved.global_batch_windows == state_.global_batch_windows, "cannot resume from ", latest, ": it was trained with ",
              saved.global_batch_windows, " sequences per step and this run would use ", state_.global_batch_windows,
              " (", world, " ranks). Fix: set global_batch_tokens: ", saved.global_batch_windows * cfg.seq_len,
              " in the recipe, so the batch stays the same on any number of ranks");
      if (saved.world != world)
        spdlog::info("resuming a {}-rank checkpoint on {} ranks: optimizer state resharded, same global batch and data order",
                     saved.world, world);
      saved.world = world;
      saved.zero1 = zero1_;
      saved.global_batch_windows = state_.global_batch_windows;
      state_ = saved;
      check_recipe_changes(latest, saved_recipe);
      loader_->restore(state_.cursor);
      spdlog::info("resumed from {} at step {} ({} tokens)", latest, state_.step, state_.tokens);
      result_.last_checkpoint = latest;
      resumed = true;
    }
  }

  const ModelSummary summary = summarize(cfg.model, cfg.micro_batch, bf16_ ? 2 : 4);
  spdlog::info("model {}: {} parameters ({} non-embedding), {:.3f} GFLOP/token training; device {}, {}",
               cfg.model.name, summary.total_params, summary.non_embedding_params,
               summary.training_flops_per_token / 1e9, device_.str(), bf16_ ? "bf16 autocast" : "fp32");
  spdlog::info("data {}: {} train tokens, {} windows of {}; {} steps of {} tokens ({} x {} x {} accumulation x {} ranks){}",
               cfg.data_dir, loader_->total_tokens(), loader_->num_windows(), cfg.seq_len, total_steps_,
               tokens_per_step_, cfg.micro_batch, cfg.seq_len, accum_, world, zero1_ ? ", ZeRO-1" : "");
  if (world > 1)
    spdlog::info("gradient buckets: {} of ~{} MB; {} parameters per rank in the optimizer", flat_->buckets().size(),
                 cfg.distributed.bucket_mb, optimizer_->state_numel());
  // Every rank counts the whole run's throughput: peak of all ranks together.
  const double peak = (cfg.peak_tflops > 0 ? cfg.peak_tflops * 1e12 : runtime::peak_flops(device_, bf16_)) * world;
  metrics_ = std::make_unique<MetricsSink>(cfg, comm_->rank() == 0, resumed, state_.step, total_steps_,
                                           options.progress, summary.training_flops_per_token, peak, device_);
}

// Rank 0 locks run_dir for the life of the run and refuses to start a fresh run over an older
// one (unless --overwrite, which clears it); every rank learns the outcome, so a refusal ends
// the whole launch at once instead of leaving the other ranks waiting in a collective.
void Trainer::claim_run_dir() {
  std::string status = "ok";
  if (comm_->rank() == 0) {
    try {
      lock_ = std::make_unique<io::RunLock>(io::RunLock::acquire(cfg_.run_dir, "samba train " + cfg_.source));
      if (lock_->previous())
        spdlog::warn("{}: taking over the lock of a run that is gone ({})", cfg_.run_dir, lock_->previous()->describe());
      if (options_.overwrite) {
        const auto old = io::inspect_run_dir(cfg_.run_dir);
        if (old.holds_run()) {
          spdlog::warn("--overwrite: removing the older run in {} ({})", cfg_.run_dir, old.describe());
          for (const char* part : {"checkpoints", "tb", "metrics.jsonl", "train.log"})
            io::remove_tree((fs::path(cfg_.run_dir) / part).string());
        }
      } else if (!options_.resume) {
        io::check_fresh_run_dir(cfg_.run_dir);
      }
    } catch (const std::exception& e) {
      status = std::string("error:") + e.what();
    }
  }
  if (comm_->distributed()) status = comm_->broadcast_string(status, 0);
  if (status.rfind("error:", 0) == 0)
    fail(comm_->rank() == 0 ? status.substr(6) : "rank 0 refused to start: " + status.substr(6));
}

// A resumed run must be the run it claims to continue: changes that alter the data order or
// the batch are refused unless asked for; the others are stated and recorded in the run.
void Trainer::check_recipe_changes(const std::string& checkpoint, const std::string& saved_recipe) {
  const TrainConfig old = parse_stored_recipe(saved_recipe, checkpoint + "/train.yaml");
  const auto changes = recipe_changes(old, cfg_);
  if (changes.empty()) return;
  const std::string listed = format_changes(changes);
  check(!breaks_data_order(changes) || options_.allow_recipe_change, "cannot resume from ", checkpoint,
        ": the recipe changed in ways that make the continuation a different run:\n", listed,
        "Fix: restore those values, start a new run_dir, or pass --allow-recipe-change to continue anyway");
  spdlog::warn("resuming with a changed recipe (recorded in trainer.json):\n{}", listed);
  nlohmann::json record = {{"step", state_.step}, {"changes", nlohmann::json::array()}};
  for (const auto& c : changes)
    record["changes"].push_back({{"key", c.key}, {"old", c.old_value}, {"new", c.new_value}, {"effect", c.effect},
                                 {"breaks_data_order", c.kind == RecipeChangeKind::kBreaksDataOrder}});
  state_.recipe_changes.push_back(record);
}

// One optimizer step over the global batch: micro-batches with gradient accumulation, the
// reduction overlapping the last backward, one small all-reduce that makes every rank agree on
// the loss, the gradient norm, non-finite values and stop signals, then the update. Nothing
// here waits for the device: the clip scale and the skip decision are computed there, and the
// host reads the step's statistics later (drain()), so it queues the next step while the
// device still works on this one.
Trainer::DeviceStep Trainer::train_step() {
  DeviceStep out;
  flat_->zero_grad();
  auto loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat32).device(device_));
  const double scale = 1.0 / static_cast<double>(accum_ * comm_->world());
  const bool poison = faults_->poison_loss(state_.step + 1);
  for (int64_t micro = 0; micro < accum_; ++micro) {
    // Read ahead on the prefetcher's thread; on a GPU run staged in pinned memory and copied
    // asynchronously (the caching host allocator keeps the staging buffer until the copy has run).
    const torch::Tensor host = batches_->next();
    torch::Tensor batch;
    if (device_.is_cuda()) {
      auto pinned = torch::empty(host.sizes(), torch::TensorOptions(torch::kInt32).pinned_memory(true));
      pinned.copy_(host);
      batch = pinned.to(device_, torch::kInt32, /*non_blocking=*/true).to(torch::kLong);
    } else {
      batch = host.to(torch::kLong);
    }
    torch::Tensor loss;
    {
      runtime::AutocastScope autocast(device_, bf16_);
      loss = model_->loss(batch.slice(1, 0, cfg_.seq_len), batch.slice(1, 1, cfg_.seq_len + 1));
    }
    if (poison) loss = loss * std::numeric_limits<float>::quiet_NaN();
    reducer_->begin_backward(/*sync=*/micro + 1 == accum_);
    (loss * scale).backward();
    loss_sum += loss.detach().to(torch::kFloat32);
  }
  reducer_->finish();
  out.comm_exposed_s = reducer_->stats().exposed_seconds;

  // [loss sum, squared grad norm (sharded part), stop signal] summed over ranks.
  auto sq = optimizer_->grad_sq_sum();
  auto agreed = torch::stack({loss_sum, zero1_ ? sq : torch::zeros_like(sq),
                              torch::full({}, signals_.received() ? 1.0f : 0.0f, sq.options())});
  comm_->all_reduce(agreed, runtime::ReduceOp::Sum);
  if (!zero1_) agreed[1].copy_(sq);  // replicated gradients: every rank already has the full sum
  // On the device, in float64 (the same arithmetic the host did before): the mean loss, the
  // norm, whether both are finite (else every rank skips the update) and the clip scale.
  const auto a64 = agreed.to(torch::kFloat64);
  const auto loss = a64[0] * scale, norm = a64[1].sqrt();
  const auto apply = torch::isfinite(loss).logical_and(torch::isfinite(norm)).to(torch::kFloat64);
  const auto clip = clip_scale(norm, cfg_.optimizer.grad_clip);
  const double lr = learning_rate(cfg_.optimizer, state_.step, total_steps_);
  optimizer_->step(lr, torch::stack({clip, apply}));
  if (zero1_) dist::gather_parameter_pieces(*flat_, *comm_);  // each rank updated only its pieces (none if skipped)
  out.stats = torch::stack({loss, norm, a64[2], apply});
  return out;
}

// Reads the pending steps' statistics (one device-to-host copy) and does their bookkeeping in
// step order: skipped-step policy, metrics, first and last loss. True if a stop signal came.
bool Trainer::drain() {
  if (pending_.empty()) return false;
  std::vector<torch::Tensor> stats;
  for (const auto& p : pending_) stats.push_back(p.stats);
  const auto host = torch::stack(stats).to(torch::kCPU).contiguous();
  const double* h = host.data_ptr<double>();
  const auto now = std::chrono::steady_clock::now();
  const double per_step = std::chrono::duration<double>(now - last_drain_).count() / static_cast<double>(pending_.size());
  last_drain_ = now;
  bool stop = false;
  for (size_t i = 0; i < pending_.size(); ++i) {
    const PendingStep& p = pending_[i];
    StepOutcome o;
    o.loss = h[4 * i];
    o.grad_norm = h[4 * i + 1];
    o.stop_signal = static_cast<int>(h[4 * i + 2]);
    o.skipped = h[4 * i + 3] == 0;
    o.seconds = per_step;
    o.comm_exposed_s = p.comm_exposed_s;
    if (o.skipped) {
      ++state_.skipped_in_a_row;
      check(cfg_.nan_policy == "skip", "step ", p.step, ": non-finite loss or gradient (loss ", o.loss, ", grad norm ",
            o.grad_norm, "); stopping (nan_policy: stop). Lower the learning rate or resume from the last checkpoint");
      check(state_.skipped_in_a_row <= cfg_.max_skipped_steps, "step ", p.step, ": ", state_.skipped_in_a_row,
            " non-finite steps in a row; stopping. Lower the learning rate or check the data");
      spdlog::warn("step {}: non-finite loss or gradient (loss {}, grad norm {}); skipped this update on every rank",
                   p.step, o.loss, o.grad_norm);
    } else {
      state_.skipped_in_a_row = 0;
    }
    result_.last_loss = o.loss;
    if (!o.skipped && !std::isfinite(first_loss_)) first_loss_ = o.loss;
    TrainState at;
    at.step = p.step;
    at.tokens = p.tokens;
    metrics_->step(at, o, p.lr, tokens_per_step_);
    stop = stop || o.stop_signal != 0;
  }
  pending_.clear();
  return stop;
}

void Trainer::save(const char* reason) {
  const nlohmann::json extra = {{"total_steps", total_steps_},
                                {"tokenizer_path", dataset_.tokenizer},
                                {"dataset_dir", dataset_.dir},
                                {"model_name", cfg_.model.name}};
  state_.cursor = batches_ ? batches_->cursor() : loader_->cursor();
  result_.last_checkpoint = checkpointer_->save(state_, *model_, *optimizer_, zero1_, extra, reason);
  last_drain_ = std::chrono::steady_clock::now();  // the next steps' time excludes the save
}

TrainResult Trainer::run() {
  const int64_t first_step = state_.step;
  auto evaluate = [&] {
    auto r = evaluator_->run(model_);
    result_.val_loss = r.loss;
    result_.val_ppl = r.ppl;
    metrics_->eval(state_, r.loss, r.ppl, r.tokens, dataset_.unigram_val_ppl);
    last_drain_ = std::chrono::steady_clock::now();  // the next steps' time excludes the evaluation
  };
  last_drain_ = std::chrono::steady_clock::now();
  // From here the prefetcher's thread reads the loader (resume has restored its cursor).
  if (state_.step < total_steps_) batches_ = std::make_unique<BatchPrefetcher>(*loader_, cfg_.micro_batch);

  while (state_.step < total_steps_) {
    const double lr = learning_rate(cfg_.optimizer, state_.step, total_steps_);
    const DeviceStep outcome = train_step();
    state_.step += 1;
    state_.tokens += tokens_per_step_;
    pending_.push_back({outcome.stats, state_.step, state_.tokens, lr, outcome.comm_exposed_s});

    // The device's statistics are read once per log interval, and before anything that needs
    // them: evaluation, checkpoints (skipped-step count), stopping. Every rank reads at the
    // same steps, so a stop signal (all-reduced with each step) stops them all after one step.
    const bool eval_due = cfg_.eval_every > 0 && state_.step % cfg_.eval_every == 0 && state_.step < total_steps_;
    const bool stop_after = options_.stop_after_steps > 0 && state_.step - first_step >= options_.stop_after_steps;
    const bool ckpt_due = checkpointer_->due(state_.step) && state_.step < total_steps_;
    // At least every kMaxPendingSteps steps, so a stop signal is not left waiting for a long
    // log interval (SLURM's grace period); the same steps on every rank.
    constexpr size_t kMaxPendingSteps = 32;
    bool stop_signal = false;
    if (state_.step % cfg_.log_every == 0 || state_.step == total_steps_ || eval_due || stop_after || ckpt_due ||
        pending_.size() >= kMaxPendingSteps)
      stop_signal = drain();
    faults_->maybe_exit_after(state_.step);

    if (eval_due) evaluate();
    if (stop_signal) {
      const int mine = signals_.received();
      const std::string what = mine ? StopSignals::name(mine) : std::string("a stop signal on another rank");
      spdlog::warn("received {}: writing a checkpoint and stopping", what);
      save(what.c_str());
      result_.interrupted = true;
      break;
    }
    if (stop_after) {
      save("stop_after_steps");
      break;
    }
    if (ckpt_due) save("periodic");
  }
  metrics_->finish();
  // Stop reading ahead; checkpoints from here save the consumed position, which batches_ held.
  if (batches_) state_.cursor = batches_->cursor();
  batches_.reset();
  loader_->restore(state_.cursor);
  result_.steps = state_.step;
  result_.tokens = state_.tokens;
  if (state_.step >= total_steps_ && !result_.interrupted) {
    save("final");  // a no-op when this step is already on disk
    evaluate();
    // Diverged: the model ends no better than where this run started (lr far too high leaves
    // the loss at or above ln(vocab)), or not finite. Merely not beating the unigram baseline
    // yet (a short run) is only worth a warning.
    result_.diverged = !std::isfinite(result_.val_loss) ||
                       (std::isfinite(first_loss_) && result_.val_loss >= first_loss_);
    if (result_.diverged)
      spdlog::error("the run diverged: final validation loss {:.4f} is no better than the first training loss "
                    "{:.4f} (learning rate too high?)", result_.val_loss, first_loss_);
    else if (result_.unigram_ppl > 0 && !(result_.val_ppl < result_.unigram_ppl))
      spdlog::warn("the final validation perplexity {:.2f} is not better than the unigram baseline {:.2f} yet",
                   result_.val_ppl, result_.unigram_ppl);
  }
  comm_->barrier();
  return result_;
}

}  // namespace

TrainResult train(const TrainConfig& cfg, const TrainOptions& options) {
  Trainer trainer(cfg, options);
  return trainer.run();
}

}  // namespace samba
