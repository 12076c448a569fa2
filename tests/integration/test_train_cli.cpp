// End-to-end through the `samba` binary on a generated corpus: a run killed with SIGKILL and
// resumed reproduces the uninterrupted run's per-step losses exactly; SIGTERM checkpoints and
// exits 0; a different model config is refused on resume; a corrupted checkpoint is reported.
#include "integration/cli_util.h"

namespace fs = std::filesystem;
using samba::testing::losses;
using samba::testing::samba_bin;
using samba::testing::wait_for;

namespace {

std::string slurp(const fs::path& p) { return samba::testing::read_text(p); }
int run(const std::string& cmd, std::string* output = nullptr) { return samba::testing::run_cmd(cmd, output); }

// Starts `samba train <recipe> [--resume]` in the background; returns its pid.
pid_t spawn_train(const fs::path& recipe, const fs::path& log, bool resume) {
  std::vector<std::string> args{"train", recipe.string(), "--no-progress"};
  if (resume) args.push_back("--resume");
  return samba::testing::spawn_samba(args, log);
}

class TrainCli : public ::testing::Test {
 protected:
  static fs::path dir_;

  static void SetUpTestSuite() {
    if (samba_bin().empty()) return;
    dir_ = fs::temp_directory_path() / ("samba_train_cli_" + std::to_string(::getpid()));
    samba::io::remove_tree(fs::path(dir_).string());
    samba::testing::make_tiny_dataset(dir_);
  }
  static void TearDownTestSuite() {
    if (!dir_.empty()) samba::io::remove_tree(fs::path(dir_).string());
  }

  void SetUp() override {
    if (samba_bin().empty()) GTEST_SKIP() << "SAMBA_BIN is not set (run through ctest)";
  }

  fs::path recipe(const std::string& name, int64_t steps, const std::string& extra = "", int log_every = 1) {
    const fs::path p = dir_ / (name + ".yaml");
    std::ofstream(p) << "model: model.yaml\ndata: " << (dir_ / "ds").string() << "\nrun_dir: " << (dir_ / name).string()
                     << "\ndevice: cpu\nseed: 11\nmicro_batch: 4\nglobal_batch_tokens: 256\nmax_tokens: " << steps * 256
                     << "\nthreads: 1\nlog_every: " << log_every << "\ncheckpoint_every: 4\neval_tokens: 512\n"
                     << "optimizer: {lr: 0.003, min_lr: 0.0003, warmup_fraction: 0.1}\n"
                     << extra;
    return p;
  }
};
fs::path TrainCli::dir_;

}  // namespace

TEST_F(TrainCli, SigkillThenResumeReproducesLossesExactly) {
  const int64_t steps = 14;
  std::string out;
  ASSERT_EQ(run(samba_bin() + " train " + recipe("straight", steps).string() + " --no-progress", &out), 0) << out;
  auto reference = losses(dir_ / "straight");
  ASSERT_EQ(static_cast<int64_t>(reference.size()), steps);

  const fs::path r = recipe("killed", steps);
  const pid_t pid = spawn_train(r, dir_ / "killed.log", false);
  // Kill after the step-8 checkpoint is complete and training has moved past it, so the
  // resumed run must redo steps 9.. from the checkpoint.
  int status = 0;
  const bool reached = wait_for(
      pid,
      [&] { return fs::exists(dir_ / "killed" / "checkpoints" / "step_00000008" / "COMPLETE") && losses(dir_ / "killed").size() >= 9; },
      120, &status);
  ASSERT_TRUE(reached) << slurp(dir_ / "killed.log");
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  ASSERT_LT(losses(dir_ / "killed").size(), static_cast<size_t>(steps)) << "the run finished before it was killed";

  ASSERT_EQ(run(samba_bin() + " train " + r.string() + " --no-progress --resume", &out), 0) << out;
  EXPECT_NE(out.find("resumed from"), std::string::npos) << out;
  auto resumed = losses(dir_ / "killed");
  ASSERT_EQ(resumed.size(), reference.size());
  for (const auto& [step, loss] : reference) EXPECT_EQ(resumed[step], loss) << "step " << step;
  // The model learned something: loss fell well below uniform (ln 320 = 5.77).
  EXPECT_LT(reference.rbegin()->second, 4.5);
}

TEST_F(TrainCli, SigtermWritesACheckpointAndExitsZero) {
  const fs::path r = recipe("termed", 400);
  const pid_t pid = spawn_train(r, dir_ / "termed.log", false);
  int status = 0;
  ASSERT_TRUE(wait_for(pid, [&] { return losses(dir_ / "termed").size() >= 2; }, 120, &status)) << slurp(dir_ / "termed.log");
  ::kill(pid, SIGTERM);
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << slurp(dir_ / "termed.log");
  EXPECT_EQ(WEXITSTATUS(status), 0) << slurp(dir_ / "termed.log");
  const std::string log = slurp(dir_ / "termed.log");
  EXPECT_NE(log.find("SIGTERM"), std::string::npos) << log;
  const int64_t last = losses(dir_ / "termed").rbegin()->first;
  char name[32];
  std::snprintf(name, sizeof name, "step_%08lld", static_cast<long long>(last));
  EXPECT_TRUE(fs::exists(dir_ / "termed" / "checkpoints" / name / "COMPLETE")) << log;
}

TEST_F(TrainCli, ResumeRefusesADifferentModel) {
  std::string out;
  const fs::path r = recipe("refuse", 2);
  ASSERT_EQ(run(samba_bin() + " train " + r.string() + " --no-progress", &out), 0) << out;
  std::ofstream(dir_ / "model2.yaml") << "include: model.yaml\nd_model: 32\n";
  std::string text = slurp(r);
  text.replace(text.find("model: model.yaml"), 17, "model: model2.yaml");
  std::ofstream(r) << text;
  EXPECT_NE(run(samba_bin() + " train " + r.string() + " --no-progress --resume", &out), 0);
  EXPECT_NE(out.find("different model config"), std::string::npos) << out;
}

TEST_F(TrainCli, CorruptCheckpointIsReported) {
  std::string out;
  const fs::path r = recipe("corrupt", 2);
  ASSERT_EQ(run(samba_bin() + " train " + r.string() + " --no-progress", &out), 0) << out;
  const fs::path model = dir_ / "corrupt" / "checkpoints" / "step_00000002" / "model.safetensors";
  ASSERT_TRUE(fs::exists(model));
  {
    std::fstream f(model, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(model) / 2));
    char c = 0;
    f.read(&c, 1);
    f.seekp(static_cast<std::streamoff>(fs::file_size(model) / 2));
    c = static_cast<char>(c ^ 0x40);
    f.write(&c, 1);
  }
  EXPECT_NE(run(samba_bin() + " train " + r.string() + " --no-progress --resume", &out), 0);
  EXPECT_NE(out.find("model.safetensors"), std::string::npos) << out;
  EXPECT_EQ(out.find("internal error"), std::string::npos) << out;
}

TEST_F(TrainCli, NonFiniteLossIsSkippedOrStopsNamingTheStep) {
  std::string out;
  const fs::path skip = recipe("nan_skip", 4);
  ASSERT_EQ(run("SAMBA_FAULT_NAN_STEP=3 " + samba_bin() + " train " + skip.string() + " --no-progress", &out), 0) << out;
  EXPECT_NE(out.find("step 3: non-finite loss"), std::string::npos) << out;
  EXPECT_NE(out.find("skipped this update"), std::string::npos) << out;

  const fs::path stop = recipe("nan_stop", 4, "nan_policy: stop\n");
  EXPECT_NE(run("SAMBA_FAULT_NAN_STEP=2 " + samba_bin() + " train " + stop.string() + " --no-progress", &out), 0);
  EXPECT_NE(out.find("step 2: non-finite loss"), std::string::npos) << out;
  EXPECT_NE(out.find("nan_policy: stop"), std::string::npos) << out;
}

// The step statistics stay on the device and are read once per log interval (no host sync per
// step): the same run logged every step and every 5 steps writes the same per-step records, a
// skipped step included, and ends with the same weights.
TEST_F(TrainCli, StatisticsReadPerLogIntervalMatchEveryStep) {
  std::string out;
  const fs::path every = recipe("log_each_step", 12), fifth = recipe("log_every_fifth", 12, "", 5);
  ASSERT_EQ(run("SAMBA_FAULT_NAN_STEP=3 " + samba_bin() + " train " + every.string() + " --no-progress", &out), 0) << out;
  ASSERT_EQ(run("SAMBA_FAULT_NAN_STEP=3 " + samba_bin() + " train " + fifth.string() + " --no-progress", &out), 0) << out;
  EXPECT_NE(out.find("step 3: non-finite loss"), std::string::npos) << out;
  const auto a = losses(dir_ / "log_each_step"), b = losses(dir_ / "log_every_fifth");
  ASSERT_EQ(a.size(), 12u);
  ASSERT_EQ(b.size(), 12u);
  for (const auto& [step, loss] : a) {
    if (step == 3) {
      EXPECT_TRUE(std::isnan(loss) && std::isnan(b.at(step))) << "step 3 was poisoned";
      continue;
    }
    EXPECT_EQ(b.at(step), loss) << "step " << step;
  }
  const std::string wa = slurp(dir_ / "log_each_step" / "checkpoints" / "step_00000012" / "model.safetensors");
  EXPECT_FALSE(wa.empty());
  EXPECT_TRUE(wa == slurp(dir_ / "log_every_fifth" / "checkpoints" / "step_00000012" / "model.safetensors"))
      << "final weights differ";
}

TEST_F(TrainCli, SighupCheckpointsLikeSigterm) {
  const fs::path r = recipe("hupped", 400);
  const pid_t pid = spawn_train(r, dir_ / "hupped.log", false);
  int status = 0;
  ASSERT_TRUE(wait_for(pid, [&] { return losses(dir_ / "hupped").size() >= 2; }, 120, &status)) << slurp(dir_ / "hupped.log");
  ::kill(pid, SIGHUP);
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << slurp(dir_ / "hupped.log");
  EXPECT_EQ(WEXITSTATUS(status), 0) << slurp(dir_ / "hupped.log");
  const std::string log = slurp(dir_ / "hupped.log");
  EXPECT_NE(log.find("SIGHUP"), std::string::npos) << log;
  const int64_t last = losses(dir_ / "hupped").rbegin()->first;
  char name[32];
  std::snprintf(name, sizeof name, "step_%08lld", static_cast<long long>(last));
  EXPECT_TRUE(fs::exists(dir_ / "hupped" / "checkpoints" / name / "COMPLETE")) << log;
}

TEST_F(TrainCli, SecondTrainerOnARunDirectoryIsRefusedAndTheFirstIsUntouched) {
  const fs::path r = recipe("locked", 400);
  const pid_t pid = spawn_train(r, dir_ / "locked.log", false);
  int status = 0;
  ASSERT_TRUE(wait_for(pid, [&] { return losses(dir_ / "locked").size() >= 1; }, 120, &status)) << slurp(dir_ / "locked.log");
  std::string out;
  EXPECT_NE(run(samba_bin() + " train " + r.string() + " --no-progress --resume", &out), 0);
  EXPECT_NE(out.find("pid " + std::to_string(pid)), std::string::npos) << out;
  EXPECT_NE(run(samba_bin() + " train " + r.string() + " --no-progress", &out), 0);
  ::kill(pid, SIGTERM);
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << slurp(dir_ / "locked.log");
  // metrics.jsonl is still one writer's JSONL.
  const auto l = losses(dir_ / "locked");
  EXPECT_EQ(static_cast<int64_t>(l.size()), l.rbegin()->first);
}

TEST_F(TrainCli, FreshRunIntoAnOlderRunIsRefusedUnlessOverwrite) {
  std::string out;
  const fs::path r = recipe("older", 2);
  ASSERT_EQ(run(samba_bin() + " train " + r.string() + " --no-progress", &out), 0) << out;
  EXPECT_NE(run(samba_bin() + " train " + r.string() + " --no-progress", &out), 0);
  EXPECT_NE(out.find("--resume"), std::string::npos) << out;
  EXPECT_NE(out.find("--overwrite"), std::string::npos) << out;
  ASSERT_EQ(run(samba_bin() + " train " + r.string() + " --no-progress --overwrite", &out), 0) << out;
  EXPECT_EQ(losses(dir_ / "older").size(), 2u);
}

TEST_F(TrainCli, ChangedRecipeOnResumeIsListedAndRefusedOrRecorded) {
  std::string out;
  const fs::path r = recipe("changed", 6);
  ASSERT_EQ(run(samba_bin() + " train " + r.string() + " --no-progress --stop-after-steps 2", &out), 0) << out;
  // A new seed changes the data order: refused, listed, with the way out.
  ASSERT_EQ(run(samba_bin() + " train " + r.string() + " --no-progress --resume --set seed=12 --stop-after-steps 1", &out) != 0, true) << out;
  EXPECT_NE(out.find("seed: 11 -> 12"), std::string::npos) << out;
  EXPECT_NE(out.find("--allow-recipe-change"), std::string::npos) << out;
  // A new peak learning rate is legitimate: stated and recorded in the run.
  ASSERT_EQ(run(samba_bin() + " train " + r.string() + " --no-progress --resume --set optimizer.lr=0.002 --stop-after-steps 1", &out), 0) << out;
  EXPECT_NE(out.find("optimizer.lr"), std::string::npos) << out;
  const auto state = nlohmann::json::parse(slurp(dir_ / "changed" / "checkpoints" / "step_00000003" / "trainer.json"));
  ASSERT_EQ(state["recipe_changes"].size(), 1u) << state.dump();
  EXPECT_EQ(state["recipe_changes"][0]["changes"][0]["key"], "optimizer.lr");
  // Asked for explicitly, the data-order change goes through.
  EXPECT_EQ(run(samba_bin() + " train " + r.string() + " --no-progress --resume --set seed=12 --allow-recipe-change", &out), 0) << out;
}

TEST_F(TrainCli, ADivergedRunIsReportedNotFinished) {
  std::string out;
  const fs::path r = recipe("diverged", 6, "nan_policy: skip\nmax_skipped_steps: 100\n");
  std::string text = slurp(r);
  text.replace(text.find("lr: 0.003"), 9, "lr: 10.0");
  text.replace(text.find("min_lr: 0.0003"), 14, "min_lr: 10.0");
  std::ofstream(r) << text;
  const int rc = run(samba_bin() + " train " + r.string() + " --no-progress", &out);
  EXPECT_EQ(rc, 4) << out;
  EXPECT_NE(out.find("diverged"), std::string::npos) << out;
  EXPECT_EQ(out.find("\nfinished"), std::string::npos) << out;
}
