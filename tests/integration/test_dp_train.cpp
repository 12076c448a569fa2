// Data-parallel training through the `samba` binary with Gloo on CPU: ranks are processes
// started with torchrun's (or SLURM's) environment variables, as the launchers would.
//
// Tolerance for "equals the one-process run": the ranks compute the same global batch, but
// the gradient is summed in another order (each rank's partial sum, then the all-reduce,
// instead of one running sum), which changes fp32 results by a few ulps per step. AdamW then
// divides by sqrt(v), so a parameter whose gradient is near zero can move by a visible
// fraction of one step (lr = 3e-3) on either side. We therefore accept max |d theta| <= 2e-4
// (under 7% of one step's size) after 6 steps and per-step losses within 1e-4 relative.
// Anything structurally wrong — a rank reading other data, a missed reduction, a wrong
// scale, ZeRO-1 pieces not gathered — moves parameters by whole steps and losses by far more.
#include <cmath>

#include "integration/cli_util.h"
#include "samba/ckpt/checkpoint.h"

namespace fs = std::filesystem;
using namespace samba::testing;

namespace {

constexpr int64_t kSteps = 6;
constexpr double kParamTol = 2e-4;
constexpr double kLossRelTol = 1e-4;
// Small buckets, so ZeRO-1 runs over several of them.
constexpr const char* kZero1 = "{timeout_s: 20, zero1: true, bucket_mb: 0.0625}";

class DataParallel : public ::testing::Test {
 protected:
  static fs::path dir_;

  static void SetUpTestSuite() {
    if (samba_bin().empty()) return;
    dir_ = fs::temp_directory_path() / ("samba_dp_" + std::to_string(::getpid()));
    samba::io::remove_tree(dir_.string());
    make_tiny_dataset(dir_);
  }
  static void TearDownTestSuite() {
    if (!dir_.empty()) samba::io::remove_tree(dir_.string());
  }
  void SetUp() override {
    if (samba_bin().empty()) GTEST_SKIP() << "SAMBA_BIN is not set (run through ctest)";
  }

  // Global batch 8 sequences of 32: accumulation 8 / (2 x world) micro-batches of 2.
  // `dist`: the recipe's distributed section.
  fs::path recipe(const std::string& name, int64_t steps = kSteps, const std::string& dist = "{timeout_s: 20}") {
    const fs::path p = dir_ / (name + ".yaml");
    std::ofstream(p) << "model: model.yaml\ndata: " << (dir_ / "ds").string() << "\nrun_dir: " << (dir_ / name).string()
                     << "\ndevice: cpu\nseed: 5\nmicro_batch: 2\nglobal_batch_tokens: 512\nmax_tokens: " << steps * 512
                     << "\nthreads: 1\nlog_every: 1\ncheckpoint_every: 2\neval_tokens: 512\n"
                     << "optimizer: {lr: 0.003, min_lr: 0.0003, warmup_fraction: 0.1}\n"
                     << "distributed: " << dist << "\n";
    return p;
  }

  // Runs `world` ranks of `samba train <recipe> <flags>` to completion; returns rank 0's log.
  // Every rank must exit 0.
  std::string run_ranks(const fs::path& r, int world, const std::vector<std::string>& flags = {},
                        const std::map<std::string, std::string>& extra_env = {}) {
    const int port = free_port();
    std::vector<pid_t> pids;
    std::vector<std::string> args{"train", r.string(), "--no-progress"};
    args.insert(args.end(), flags.begin(), flags.end());
    for (int rank = 0; rank < world; ++rank) {
      auto env = world > 1 ? torchrun_env(rank, world, port) : std::map<std::string, std::string>{};
      env.insert(extra_env.begin(), extra_env.end());
      pids.push_back(spawn_samba(args, log_of(r, rank), env));
    }
    for (int rank = 0; rank < world; ++rank) {
      const int status = wait_exit(pids[rank], 300);
      EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
          << "rank " << rank << " of " << world << " failed:\n" << read_text(log_of(r, rank));
    }
    return read_text(log_of(r, 0));
  }
  static fs::path log_of(const fs::path& recipe, int rank) {
    return fs::path(recipe.string() + ".rank" + std::to_string(rank) + ".log");
  }
  static fs::path final_model(const std::string& run, int64_t step = kSteps) {
    char name[32];
    std::snprintf(name, sizeof name, "step_%08lld", static_cast<long long>(step));
    return dir_ / run / "checkpoints" / name / "model.safetensors";
  }
};
fs::path DataParallel::dir_;

double max_param_diff(const fs::path& a, const fs::path& b) {
  auto ta = samba::ckpt::load_tensors(a.string());
  auto tb = samba::ckpt::load_tensors(b.string());
  EXPECT_EQ(ta.size(), tb.size());
  double worst = 0;
  for (const auto& [name, t] : ta) {
    auto it = tb.find(name);
    if (it == tb.end()) {
      ADD_FAILURE() << name << " missing from " << b;
      continue;
    }
    worst = std::max(worst, (t.to(torch::kFloat64) - it->second.to(torch::kFloat64)).abs().max().item<double>());
  }
  std::printf("max |d theta| %s vs %s: %.3g\n", a.parent_path().parent_path().parent_path().filename().c_str(),
              b.parent_path().parent_path().parent_path().filename().c_str(), worst);
  return worst;
}

void expect_losses_close(const std::map<int64_t, double>& want, const std::map<int64_t, double>& got,
                         int64_t from_step = 1) {
  for (const auto& [step, loss] : want) {
    if (step < from_step) continue;
    auto it = got.find(step);
    ASSERT_NE(it, got.end()) << "step " << step << " missing";
    EXPECT_NEAR(it->second, loss, kLossRelTol * std::abs(loss)) << "step " << step;
  }
}

}  // namespace

TEST_F(DataParallel, TwoAndFourRanksMatchOneProcessAndZero1MatchesToo) {
  run_ranks(recipe("one"), 1);
  const auto ref = losses(dir_ / "one");
  ASSERT_EQ(static_cast<int64_t>(ref.size()), kSteps);
  EXPECT_LT(ref.rbegin()->second, ref.begin()->second) << "the run should learn something";

  const std::string log2 = run_ranks(recipe("two"), 2);
  EXPECT_NE(log2.find("data parallel"), std::string::npos) << log2;
  expect_losses_close(ref, losses(dir_ / "two"));
  EXPECT_LE(max_param_diff(final_model("one"), final_model("two")), kParamTol);

  run_ranks(recipe("four"), 4);
  expect_losses_close(ref, losses(dir_ / "four"));
  EXPECT_LE(max_param_diff(final_model("one"), final_model("four")), kParamTol);

  const std::string logz = run_ranks(recipe("zero", kSteps, kZero1), 2);
  EXPECT_NE(logz.find("ZeRO-1"), std::string::npos) << logz;
  expect_losses_close(ref, losses(dir_ / "zero"));
  EXPECT_LE(max_param_diff(final_model("one"), final_model("zero")), kParamTol);
  // Each rank stored its own shard: both rank files hold moments.
  const fs::path step_dir = final_model("zero").parent_path();
  auto c = samba::ckpt::load_checkpoint(step_dir.string());
  EXPECT_EQ(c.world, 2);
  ASSERT_EQ(c.ranks.size(), 2u);
  for (const auto& rf : c.ranks) EXPECT_FALSE(rf.meta["spans"].empty()) << rf.path;
}

TEST_F(DataParallel, ResumeOnADifferentNumberOfRanksContinuesTheSameRun) {
  run_ranks(recipe("ref2"), 2);
  const auto ref = losses(dir_ / "ref2");
  ASSERT_EQ(static_cast<int64_t>(ref.size()), kSteps);

  // 2 -> 1 (ZeRO-1 shards gathered back into one optimizer state).
  const fs::path a = recipe("shrink", kSteps, kZero1);
  run_ranks(a, 2, {"--stop-after-steps", "3"});
  ASSERT_EQ(losses(dir_ / "shrink").size(), 3u);
  const std::string log1 = run_ranks(a, 1, {"--resume"});
  EXPECT_NE(log1.find("resuming a 2-rank checkpoint on 1 ranks"), std::string::npos) << log1;
  expect_losses_close(ref, losses(dir_ / "shrink"), 4);
  EXPECT_EQ(losses(dir_ / "shrink").size(), static_cast<size_t>(kSteps)) << "each step once in metrics.jsonl";

  // 1 -> 2, into ZeRO-1 shards.
  const fs::path b = recipe("grow", kSteps, kZero1);
  run_ranks(b, 1, {"--stop-after-steps", "3"});
  run_ranks(b, 2, {"--resume"});
  expect_losses_close(ref, losses(dir_ / "grow"), 4);
  EXPECT_LE(max_param_diff(final_model("ref2"), final_model("grow")), kParamTol);
}

TEST_F(DataParallel, GlobalBatchThatDoesNotDivideIsRefused) {
  // 8 sequences per step cannot be split over 3 ranks of micro-batch 2.
  const fs::path r = recipe("three");
  const int port = free_port();
  std::vector<pid_t> pids;
  for (int rank = 0; rank < 3; ++rank)
    pids.push_back(spawn_samba({"train", r.string(), "--no-progress"}, log_of(r, rank), torchrun_env(rank, 3, port)));
  for (int rank = 0; rank < 3; ++rank) {
    const int status = wait_exit(pids[rank], 120);
    EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) != 0) << read_text(log_of(r, rank));
  }
  const std::string log = read_text(log_of(r, 0));
  EXPECT_NE(log.find("global_batch_tokens"), std::string::npos) << log;
  EXPECT_NE(log.find("x 3"), std::string::npos) << log;
}

TEST_F(DataParallel, SigkillOfAllRanksThenResumeIsBitwiseIdentical) {
  run_ranks(recipe("straight2", 8), 2);
  const auto ref = losses(dir_ / "straight2");
  ASSERT_EQ(ref.size(), 8u);

  const fs::path r = recipe("killed2", 8);
  const int port = free_port();
  std::vector<pid_t> pids;
  for (int rank = 0; rank < 2; ++rank)
    pids.push_back(spawn_samba({"train", r.string(), "--no-progress"}, log_of(r, rank), torchrun_env(rank, 2, port)));
  int status = 0;
  const bool reached = wait_for(
      pids[0], [&] { return fs::exists(final_model("killed2", 4).parent_path() / "COMPLETE") && losses(dir_ / "killed2").size() >= 5; },
      120, &status);
  for (pid_t p : pids) ::kill(p, SIGKILL);
  for (pid_t p : pids) ::waitpid(p, &status, 0);
  ASSERT_TRUE(reached) << read_text(log_of(r, 0));
  ASSERT_LT(losses(dir_ / "killed2").size(), 8u) << "the run finished before it was killed";

  run_ranks(r, 2, {"--resume"});
  const auto resumed = losses(dir_ / "killed2");
  ASSERT_EQ(resumed.size(), ref.size());
  for (const auto& [step, loss] : ref) EXPECT_EQ(resumed.at(step), loss) << "step " << step;
}

TEST_F(DataParallel, SigkillOfOneRankEndsTheOthersWithAClearError) {
  const fs::path r = recipe("dead", 400, "{timeout_s: 10}");
  const int port = free_port();
  std::vector<pid_t> pids;
  for (int rank = 0; rank < 2; ++rank)
    pids.push_back(spawn_samba({"train", r.string(), "--no-progress"}, log_of(r, rank), torchrun_env(rank, 2, port)));
  int status = 0;
  ASSERT_TRUE(wait_for(pids[0], [&] { return losses(dir_ / "dead").size() >= 2; }, 120, &status))
      << read_text(log_of(r, 0));
  ::kill(pids[1], SIGKILL);
  ::waitpid(pids[1], &status, 0);
  const auto killed_at = std::chrono::steady_clock::now();
  status = wait_exit(pids[0], 60);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  const std::string log = read_text(log_of(r, 0));
  ASSERT_NE(status, -1) << "rank 0 hung after rank 1 died:\n" << log;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << log;
  EXPECT_LT(took, 10 + 15) << "rank 0 should fail within the timeout";
  EXPECT_NE(log.find("rank"), std::string::npos) << log;
  EXPECT_EQ(log.find("internal error"), std::string::npos) << log;
}

TEST_F(DataParallel, SigtermToOneRankCheckpointsOnAllRanksAndExitsZero) {
  const fs::path r = recipe("termed2", 400);
  const int port = free_port();
  std::vector<pid_t> pids;
  for (int rank = 0; rank < 2; ++rank)
    pids.push_back(spawn_samba({"train", r.string(), "--no-progress"}, log_of(r, rank), torchrun_env(rank, 2, port)));
  int status = 0;
  ASSERT_TRUE(wait_for(pids[0], [&] { return losses(dir_ / "termed2").size() >= 2; }, 120, &status))
      << read_text(log_of(r, 0));
  ::kill(pids[1], SIGTERM);
  for (int rank = 0; rank < 2; ++rank) {
    status = wait_exit(pids[rank], 60);
    EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0) << read_text(log_of(r, rank));
  }
  const std::string log = read_text(log_of(r, 0));
  EXPECT_NE(log.find("stop signal on another rank"), std::string::npos) << log;
  const int64_t last = losses(dir_ / "termed2").rbegin()->first;
  EXPECT_TRUE(fs::exists(final_model("termed2", last).parent_path() / "COMPLETE")) << log;
  auto c = samba::ckpt::load_checkpoint(final_model("termed2", last).parent_path().string());
  EXPECT_EQ(c.world, 2);
}

TEST_F(DataParallel, NonFiniteGradientOnOneRankIsSkippedByAll) {
  const fs::path r = recipe("nan1", 4);
  const std::string log = run_ranks(r, 2, {}, {{"SAMBA_FAULT_NAN_STEP", "2"}, {"SAMBA_FAULT_NAN_RANK", "1"}});
  EXPECT_NE(log.find("step 2: non-finite"), std::string::npos) << log;
  EXPECT_NE(log.find("skipped this update on every rank"), std::string::npos) << log;
  // Rank 0's own loss was finite: it skipped only because it agreed with rank 1.
  EXPECT_EQ(losses(dir_ / "nan1").size(), 4u);
}

TEST_F(DataParallel, SlurmEnvironmentTrainsLikeTorchrun) {
  run_ranks(recipe("torchrun2", 2), 2);
  const fs::path r = recipe("slurm2", 2);
  const int port = free_port();
  std::vector<pid_t> pids;
  for (int rank = 0; rank < 2; ++rank) {
    std::map<std::string, std::string> env = {{"SLURM_PROCID", std::to_string(rank)}, {"SLURM_LOCALID", std::to_string(rank)},
                                              {"SLURM_NTASKS", "2"}, {"SLURM_NODELIST", "localhost"},
                                              {"SLURM_JOB_ID", "4242"}, {"MASTER_ADDR", "127.0.0.1"},
                                              {"MASTER_PORT", std::to_string(port)}};
    pids.push_back(spawn_samba({"train", r.string(), "--no-progress"}, log_of(r, rank), env));
  }
  for (int rank = 0; rank < 2; ++rank) {
    const int status = wait_exit(pids[rank], 120);
    EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0) << read_text(log_of(r, rank));
  }
  EXPECT_NE(read_text(log_of(r, 0)).find("slurm"), std::string::npos) << read_text(log_of(r, 0));
  const auto a = losses(dir_ / "torchrun2"), b = losses(dir_ / "slurm2");
  ASSERT_EQ(a.size(), 2u);
  for (const auto& [step, loss] : a) EXPECT_EQ(b.at(step), loss) << "step " << step;
}
