#pragma once
// The pieces the trainer is built from (torchtitan's shape): each owns one concern, and the
// loop in trainer.cpp only strings them together. Rank-awareness lives here and in
// dist/, never in the loop.
#include <torch/torch.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "samba/core/train_config.h"
#include "samba/data/loader.h"
#include "samba/model/model.h"
#include "samba/optim/adamw.h"
#include "samba/runtime/comm.h"

namespace samba {

class Progress;
namespace io {
class JsonlWriter;
class EventWriter;
}  // namespace io

// Everything that says where a run is. trainer.json holds it; to_json/from_json are its only
// writer and reader.
struct TrainState {
  int64_t step = 0;                 // optimizer steps taken
  int64_t tokens = 0;               // tokens consumed (all ranks)
  data::Cursor cursor;              // global data position (any world size)
  int64_t skipped_in_a_row = 0;     // consecutive non-finite steps
  int world = 1;                    // ranks of the run that wrote it
  int64_t global_batch_windows = 0; // sequences per optimizer step (all ranks)
  bool zero1 = false;
  nlohmann::json recipe_changes = nlohmann::json::array();  // accepted on resumes, oldest first

  nlohmann::json to_json() const;
  static TrainState from_json(const nlohmann::json& j, const std::string& where);
};

// What one optimizer step produced, agreed by every rank, as the host sees it once the trainer
// has read the step's statistics from the device (once per log interval: one synchronisation).
struct StepOutcome {
  double loss = 0;            // mean over the global batch
  double grad_norm = 0;       // before clipping
  bool skipped = false;       // non-finite loss or gradient somewhere: no update anywhere
  int stop_signal = 0;        // a rank received SIGTERM/SIGINT/SIGHUP
  double seconds = 0;         // wall time per step, averaged over the steps read together
  double comm_exposed_s = 0;  // waiting for gradient reduction after the backward pass
};

// Reads the training micro-batches on a background thread, up to `depth` ahead of the step
// that needs them, each into its own host tensor, so reading shards (page faults on a slow
// disk) overlaps the GPU's work. Once started, the thread owns the loader: nothing else may
// call it. The batches and their order are exactly the loader's; cursor() is the position after
// the batches next() has handed out (what a checkpoint saves), not the thread's read-ahead
// position. A loader error is rethrown by next().
class BatchPrefetcher {
 public:
  BatchPrefetcher(data::PackedLoader& loader, int64_t micro_batch, int depth = 2);
  ~BatchPrefetcher();
  BatchPrefetcher(const BatchPrefetcher&) = delete;
  BatchPrefetcher& operator=(const BatchPrefetcher&) = delete;

  // The next micro-batch: (micro_batch, seq_len + 1) int32 on the host; blocks until it is read.
  torch::Tensor next();
  data::Cursor cursor() const;

 private:
  void run();

  data::PackedLoader& loader_;
  const int64_t micro_batch_;
  const size_t depth_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<torch::Tensor, data::Cursor>> ready_;  // read, not yet handed out
  data::Cursor consumed_;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread thread_;  // last: starts after every member above exists
};

// SIGTERM, SIGINT and SIGHUP set a flag; the trainer shares it with all ranks in the step's
// one small all-reduce, so every rank stops after the same step.
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  int received() const;
  static const char* name(int sig);
};

// Test hooks driven by the environment, consulted by the step (never by the loop):
//   SAMBA_FAULT_NAN_STEP=k   step k's loss (hence its gradients) becomes NaN
//   SAMBA_FAULT_NAN_RANK=r   ... only on rank r (default: every rank)
//   SAMBA_FAULT_EXIT_STEP=k  the process exits with status 3 after step k (SAMBA_FAULT_EXIT_RANK=r: only rank r)
class FaultInjector {
 public:
  explicit FaultInjector(int rank);
  bool poison_loss(int64_t step) const;  // `step` is 1-based, the step being computed
  void maybe_exit_after(int64_t step) const;

 private:
  int64_t nan_step_ = -1, exit_step_ = -1;
  bool nan_here_ = false, exit_here_ = false;
};

// Rank 0 writes metrics.jsonl, TensorBoard events and the log line; other ranks write nothing.
class MetricsSink {
 public:
  MetricsSink(const TrainConfig& cfg, bool writer, bool resumed, int64_t resumed_step, int64_t total_steps,
              bool progress, double flops_per_token, double peak_flops, const torch::Device& device);
  ~MetricsSink();
  void step(const TrainState& s, const StepOutcome& o, double lr, int64_t tokens_per_step);
  void eval(const TrainState& s, double loss, double ppl, int64_t tokens, double unigram_ppl);
  void finish();

 private:
  const TrainConfig& cfg_;
  bool writer_;
  int64_t total_steps_, first_step_;
  double flops_per_token_, peak_;
  torch::Device device_;
  std::unique_ptr<io::JsonlWriter> jsonl_;
  std::unique_ptr<io::EventWriter> events_;
  std::unique_ptr<Progress> progress_;
  std::chrono::steady_clock::time_point run_start_, window_start_;
  int64_t window_tokens_ = 0;
  double window_comm_s_ = 0;
  int64_t window_steps_ = 0;
};

// Validation loss over the first eval_tokens of the validation split in windows of seq_len,
// the windows dealt round-robin to the ranks and the sums all-reduced: the same number for
// every world size.
class Evaluator {
 public:
  Evaluator(std::vector<std::string> val_shards, int64_t seq_len, int64_t max_tokens, int64_t batch,
            runtime::Communicator& comm, bool bf16);
  struct Result {
    double loss = 0, ppl = 0;
    int64_t tokens = 0;
  };
  Result run(LanguageModel& model);

 private:
  std::vector<std::string> shards_;
  int64_t seq_len_, max_tokens_, batch_;
  runtime::Communicator& comm_;
  bool bf16_;
};

// Checkpoint format v2 (ckpt/checkpoint.h) from the trainer's side: what each rank stores
// (model once, its optimizer shard, its RNG) and how a checkpoint of any world size is read
// back into this run's layout.
class Checkpointer {
 public:
  Checkpointer(const TrainConfig& cfg, runtime::Communicator& comm, const torch::Device& device);
  // Collective. `reason`: periodic, final, SIGTERM, ... Does nothing when this exact step is
  // already on disk from this run (a resumed run ending where it resumed).
  std::string save(const TrainState& s, torch::nn::Module& model, const AdamW& optimizer, bool zero1,
                   const nlohmann::json& extra, const std::string& reason);
  // Restores model, optimizer (resharded to this run's layout) and this rank's RNG from `dir`;
  // returns the trainer state it recorded.
  // `saved_recipe` receives the checkpoint's train.yaml.
  TrainState load(const std::string& dir, torch::nn::Module& model, AdamW& optimizer,
                  const dist::FlatParameters& flat, const std::string& model_yaml, std::string* saved_recipe);
  bool due(int64_t step) const;
  const std::string& last() const { return last_; }
  const std::string& root() const { return root_; }

 private:
  const TrainConfig& cfg_;
  runtime::Communicator& comm_;
  torch::Device device_;
  std::string root_, last_;
  int64_t on_disk_step_ = -1;
};

}  // namespace samba
