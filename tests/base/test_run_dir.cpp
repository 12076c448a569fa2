// Run-directory guards: one process per run directory (a second is refused naming the first;
// a killed holder's lock is taken over), a fresh run refused where an older run lives, and the
// recipe comparison used on --resume.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "base/io_test_util.h"
#include "samba/core/error.h"
#include "samba/core/recipe_diff.h"
#include "samba/core/train_config.h"
#include "samba/io/run_dir.h"

namespace fs = std::filesystem;
using samba::io::RunLock;
using samba::testing::TempDir;

namespace {

#define EXPECT_HAS(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << "'" << (part) << "' not in: " << (msg)

// Forks a child that takes the lock, reports through a pipe, then waits to be killed.
pid_t child_holding_lock(const std::string& run_dir) {
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    char ok = 'n';
    try {
      static RunLock lock = RunLock::acquire(run_dir, "child test run");
      ok = 'y';
    } catch (...) {
    }
    if (::write(fds[1], &ok, 1) != 1) _exit(2);
    while (true) ::pause();
  }
  ::close(fds[1]);
  char ok = 0;
  EXPECT_EQ(::read(fds[0], &ok, 1), 1);
  ::close(fds[0]);
  EXPECT_EQ(ok, 'y');
  return pid;
}

void kill_and_reap(pid_t pid) {
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
}

}  // namespace

TEST(RunLock, SecondHolderIsRefusedNamingTheFirst) {
  TempDir tmp;
  const std::string run = tmp.file("run");
  const pid_t child = child_holding_lock(run);
  const std::string msg = samba::testing::error_of([&] { RunLock::acquire(run, "second"); });
  EXPECT_HAS(msg, "is in use by another samba process: pid " + std::to_string(child));
  EXPECT_HAS(msg, "child test run");
  EXPECT_HAS(msg, "choose another run_dir");
  kill_and_reap(child);
}

TEST(RunLock, KilledHoldersLockIsTakenOverAndReported) {
  TempDir tmp;
  const std::string run = tmp.file("run");
  const pid_t child = child_holding_lock(run);
  kill_and_reap(child);  // dies holding it: the file still names it
  RunLock lock = RunLock::acquire(run, "after the crash");
  ASSERT_TRUE(lock.previous().has_value());
  EXPECT_EQ(lock.previous()->pid, child);
  auto now = samba::io::read_lock_holder(lock.path());
  ASSERT_TRUE(now.has_value());
  EXPECT_EQ(now->pid, ::getpid());
  EXPECT_EQ(now->command, "after the crash");
  EXPECT_FALSE(now->host.empty());
  EXPECT_FALSE(now->started.empty());
}

TEST(RunLock, CleanReleaseLeavesNoPreviousHolder) {
  TempDir tmp;
  const std::string run = tmp.file("a/b/run");  // created, with parents
  {
    RunLock first = RunLock::acquire(run, "first");
    EXPECT_FALSE(first.previous().has_value());
    // The same process asking twice is refused too: two trainers in one process are as bad.
    EXPECT_HAS(samba::testing::error_of([&] { RunLock::acquire(run, "again"); }), "is in use");
  }
  RunLock second = RunLock::acquire(run, "second");
  EXPECT_FALSE(second.previous().has_value());
  RunLock moved = std::move(second);
  EXPECT_HAS(samba::testing::error_of([&] { RunLock::acquire(run, "third"); }), "is in use");
  moved.release();
  EXPECT_NO_THROW(RunLock::acquire(run, "fourth"));
}

TEST(RunLock, UnwritablePlacesGetAClearMessage) {
  TempDir tmp;
  samba::testing::spit(tmp.file("file"), "x");
  EXPECT_HAS(samba::testing::error_of([&] { RunLock::acquire(tmp.file("file"), "x"); }), "cannot create run directory");
  EXPECT_HAS(samba::testing::error_of([&] { RunLock::acquire(tmp.file("file/sub"), "x"); }),
             "cannot create run directory");
  // /proc is a filesystem where nothing can be created, even by root.
  const std::string msg = samba::testing::error_of([&] { RunLock::acquire("/proc/samba-run", "x"); });
  EXPECT_HAS(msg, "cannot create run directory '/proc/samba-run'");
  EXPECT_EQ(msg.find("Success"), std::string::npos) << msg;
}

TEST(RunDir, OlderRunIsDetectedAndDescribed) {
  TempDir tmp;
  const std::string run = tmp.file("run");
  EXPECT_FALSE(samba::io::inspect_run_dir(run).exists);
  EXPECT_NO_THROW(samba::io::check_fresh_run_dir(run));  // missing: fresh
  fs::create_directories(run);
  { RunLock lock = RunLock::acquire(run, "x"); }
  EXPECT_FALSE(samba::io::inspect_run_dir(run).holds_run()) << "a lock file alone is not a run";
  samba::testing::spit(tmp.file("run/notes.txt"), "mine");
  EXPECT_FALSE(samba::io::inspect_run_dir(run).holds_run()) << "unrelated files are not a run";
  fs::create_directories(tmp.file("run/checkpoints/step_00000010"));
  fs::create_directories(tmp.file("run/checkpoints/step_00000020"));
  samba::testing::spit(tmp.file("run/metrics.jsonl"), "{}\n{}\n");
  auto c = samba::io::inspect_run_dir(run);
  ASSERT_TRUE(c.holds_run());
  EXPECT_HAS(c.describe(), "checkpoints/ with 2 checkpoint(s), newest step_00000020");
  EXPECT_HAS(c.describe(), "metrics.jsonl (2 lines)");
  const std::string msg = samba::testing::error_of([&] { samba::io::check_fresh_run_dir(run); });
  EXPECT_HAS(msg, "already holds a run");
  EXPECT_HAS(msg, "--resume");
  EXPECT_HAS(msg, "--overwrite");
}

TEST(RunDir, CrashLeftoversAndLogsCount) {
  TempDir tmp;
  fs::create_directories(tmp.file("run/checkpoints/.tmp-step_00000005-123"));
  EXPECT_HAS(samba::io::inspect_run_dir(tmp.file("run")).describe(), "1 partial or temporary entry");
  TempDir tmp2;
  samba::testing::spit(tmp2.file("train.log"), "started\n");
  EXPECT_TRUE(samba::io::inspect_run_dir(tmp2.path().string()).holds_run());
}

namespace {

samba::TrainConfig stored(const std::string& extra = "") {
  return samba::parse_stored_recipe(
      "model: m.yaml\ndata: d\nrun_dir: r\nseed: 1\nseq_len: 64\nmicro_batch: 2\nglobal_batch_tokens: 256\n"
      "max_tokens: 4096\n" + extra,
      "train.yaml");
}

}  // namespace

TEST(RecipeChanges, StoredRecipeRoundTrips) {
  samba::TrainConfig c = stored("optimizer: {lr: 0.001, min_lr: 0.0001}\n");
  samba::TrainConfig again = samba::parse_stored_recipe(samba::to_yaml(c), "again.yaml");
  EXPECT_TRUE(samba::recipe_changes(c, again).empty()) << samba::format_changes(samba::recipe_changes(c, again));
  EXPECT_EQ(again.global_batch_tokens, 256);
}

TEST(RecipeChanges, DataOrderChangesAreSeparatedFromStatedOnes) {
  samba::TrainConfig o = stored();
  samba::TrainConfig n = o;
  n.max_tokens = 8192;
  n.optimizer.lr = 1e-3;
  n.eval_every = 5;
  auto changes = samba::recipe_changes(o, n);
  ASSERT_EQ(changes.size(), 3u);
  EXPECT_FALSE(samba::breaks_data_order(changes));
  EXPECT_EQ(changes[0].key, "max_tokens");
  EXPECT_EQ(changes[0].old_value, "4096");
  EXPECT_EQ(changes[0].new_value, "8192");
  EXPECT_EQ(changes[1].key, "optimizer.lr");
  EXPECT_EQ(changes[2].key, "eval_every");

  for (auto mutate : std::vector<void (*)(samba::TrainConfig&)>{
           [](samba::TrainConfig& c) { c.seed = 2; }, [](samba::TrainConfig& c) { c.micro_batch = 4; },
           [](samba::TrainConfig& c) { c.seq_len = 32; }, [](samba::TrainConfig& c) { c.global_batch_tokens = 512; },
           [](samba::TrainConfig& c) { c.data_dir = "other"; }}) {
    samba::TrainConfig m = o;
    mutate(m);
    auto ch = samba::recipe_changes(o, m);
    ASSERT_FALSE(ch.empty());
    EXPECT_TRUE(samba::breaks_data_order(ch)) << samba::format_changes(ch);
    EXPECT_HAS(samba::format_changes(ch), "needs --allow-recipe-change");
  }
}

TEST(RecipeChanges, AccumulationIsComparedAsTokensPerStep) {
  samba::TrainConfig o = stored();
  samba::TrainConfig n = o;
  n.global_batch_tokens = 0;  // one micro-batch per step: 128 tokens instead of 256
  auto ch = samba::recipe_changes(o, n);
  ASSERT_EQ(ch.size(), 1u);
  EXPECT_EQ(ch[0].key, "global_batch_tokens");
  EXPECT_EQ(ch[0].old_value, "256");
  EXPECT_EQ(ch[0].new_value, "128");
  EXPECT_EQ(samba::format_changes(ch),
            "  global_batch_tokens: 256 -> 128 (changes the tokens per optimizer step; needs --allow-recipe-change)\n");
}
