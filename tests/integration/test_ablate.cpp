// `samba ablate` end to end on a two-run ablation over a generated corpus: interrupted with
// SIGTERM in the first run and with SIGKILL in the second, each rerun does only what was left
// (finished stages are not redone, half-trained runs resume from their checkpoint), and the
// report has both rows with perplexities at 1x and 2x, the plots and the CSV.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "samba/io/files.h"

namespace fs = std::filesystem;

namespace {

std::string samba_bin() {
  const char* b = std::getenv("SAMBA_BIN");
  return b ? b : "";
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
  return n;
}

int run(const std::string& cmd, std::string* output) {
  const fs::path out = fs::temp_directory_path() / ("samba_ablate_cmd_" + std::to_string(::getpid()) + ".txt");
  const int rc = std::system((cmd + " > " + out.string() + " 2>&1").c_str());
  *output = slurp(out);
  fs::remove(out);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

pid_t spawn(const std::vector<std::string>& args, const fs::path& log) {
  pid_t pid = ::fork();
  if (pid == 0) {
    std::freopen(log.c_str(), "w", stdout);
    std::freopen(log.c_str(), "a", stderr);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    std::_Exit(127);
  }
  return pid;
}

// Polls `cond` while `pid` runs; false if it exits first (status reaped) or on timeout.
bool wait_for(pid_t pid, const std::function<bool()>& cond, double timeout_s, int* status) {
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < timeout_s) {
    if (cond()) return true;
    if (::waitpid(pid, status, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

bool has_checkpoint(const fs::path& train_dir) {
  if (!fs::exists(train_dir / "checkpoints")) return false;
  for (const auto& e : fs::directory_iterator(train_dir / "checkpoints"))
    if (fs::exists(e.path() / "COMPLETE")) return true;
  return false;
}

class Ablate : public ::testing::Test {
 protected:
  void SetUp() override {
    if (samba_bin().empty()) GTEST_SKIP() << "SAMBA_BIN is not set (run through ctest)";
    dir_ = fs::temp_directory_path() / ("samba_ablate_" + std::to_string(::getpid()));
    samba::io::remove_tree(dir_.string());
    fs::create_directories(dir_ / "corpus");
    std::mt19937 rng(5);
    const std::vector<std::string> words{"cat", "dog", "river", "house", "sees", "finds", "the", "old", "green", "a"};
    for (int d = 0; d < 40; ++d) {
      std::ofstream f(dir_ / "corpus" / ("doc" + std::to_string(d) + ".txt"));
      for (int s = 0; s < 60; ++s) {
        for (int w = 0; w < 6; ++w) f << words[rng() % words.size()] << (w == 5 ? ". " : " ");
      }
      f << "\n";
    }
    std::ofstream(dir_ / "model-a.yaml") << "include: " << SAMBA_SOURCE_DIR << "/configs/models/tiny-samba.yaml\n"
                                         << "name: model-a\nvocab_size: 320\nd_model: 32\nseq_len: 32\nmlp_hidden: 64\n"
                                         << "repeat: 1\nattention: {n_heads: 2, n_kv_heads: 2, window: 16}\n";
    std::ofstream(dir_ / "model-b.yaml") << "include: model-a.yaml\nname: model-b\npattern: \"*-\"\nrepeat: 2\n";
    std::ofstream(dir_ / "recipe.yaml") << "model: model-a.yaml\ndata: unused\nrun_dir: unused\ndevice: cpu\nseed: 3\n"
                                        << "micro_batch: 4\nglobal_batch_tokens: 128\nmax_tokens: 1024\nthreads: 1\n"
                                        << "log_every: 1\ncheckpoint_every: 2\neval_tokens: 256\n"
                                        << "optimizer: {lr: 0.003, min_lr: 0.0003, warmup_fraction: 0.1}\n";
    // Run b is long enough to be caught half-way.
    std::ofstream(dir_ / "ablation.yaml")
        << "name: two-runs\nout_dir: " << (dir_ / "out").string() << "\n"
        << "data: {dir: " << (dir_ / "ds").string() << ", input: " << (dir_ / "corpus").string()
        << ", vocab_size: 320, val_fraction: 0.2}\n"
        << "defaults: {recipe: recipe.yaml, max_tokens: 2560}\n"
        << "eval: {lengths: [1, 2], max_blocks: 6}\n"
        << "runs:\n"
        << "  - {name: a, label: Model A, model: model-a.yaml}\n"
        << "  - {name: b, label: Model B, model: model-b.yaml, max_tokens: 12800}\n";
  }
  void TearDown() override {
    if (!dir_.empty()) samba::io::remove_tree(dir_.string());
  }

  std::vector<std::string> ablate_cmd() const { return {samba_bin(), "ablate", (dir_ / "ablation.yaml").string()}; }

  fs::path dir_;
};

TEST_F(Ablate, InterruptedTwiceThenFinishesOnlyWhatWasLeft) {
  const fs::path out = dir_ / "out";
  int status = 0;

  // 1. SIGTERM while run a trains: the trainer checkpoints, the runner exits 130.
  pid_t pid = spawn(ablate_cmd(), dir_ / "first.log");
  ASSERT_TRUE(wait_for(pid, [&] { return has_checkpoint(out / "a" / "train"); }, 300, &status)) << slurp(dir_ / "first.log");
  ::kill(pid, SIGTERM);
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << slurp(dir_ / "first.log");
  EXPECT_EQ(WEXITSTATUS(status), 130) << slurp(dir_ / "first.log");
  EXPECT_NE(slurp(dir_ / "first.log").find("Run the same command again"), std::string::npos) << slurp(dir_ / "first.log");
  ASSERT_FALSE(fs::exists(out / "a" / "trained.json")) << "run a finished before SIGTERM: make it longer";

  // 2. Rerun: a resumes and is evaluated; SIGKILL the runner once b has a checkpoint. Its
  // trainer gets SIGTERM from the kernel (parent-death signal) and checkpoints on its own.
  pid = spawn(ablate_cmd(), dir_ / "second.log");
  ASSERT_TRUE(wait_for(pid, [&] { return has_checkpoint(out / "b" / "train"); }, 300, &status)) << slurp(dir_ / "second.log");
  ::kill(pid, SIGKILL);
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status));
  const std::string second = slurp(dir_ / "second.log");
  EXPECT_NE(second.find("[1/2 a] resuming from step_"), std::string::npos) << second;
  EXPECT_TRUE(fs::exists(out / "a" / "trained.json")) << second;
  EXPECT_TRUE(fs::exists(out / "a" / "eval.json")) << second;
  ASSERT_FALSE(fs::exists(out / "b" / "trained.json")) << "run b finished before SIGKILL: make it longer";
  const std::string a_console = slurp(out / "a" / "console.log");

  // 3. Rerun to the end: nothing of a is redone, b resumes from its checkpoint.
  std::string third;
  ASSERT_EQ(run([&] {
              std::string c;
              for (const auto& a : ablate_cmd()) c += a + " ";
              return c;
            }(), &third),
            0)
      << third;
  EXPECT_NE(third.find("[1/2 a] already done"), std::string::npos) << third;
  EXPECT_EQ(count(third, "[1/2 a]"), 1u) << "run a was touched again:\n" << third;
  EXPECT_NE(third.find("[2/2 b] resuming from step_"), std::string::npos) << third;
  EXPECT_EQ(slurp(out / "a" / "console.log"), a_console);
  const std::string b_console = slurp(out / "b" / "console.log");
  EXPECT_EQ(count(b_console, "/samba train "), 2u) << b_console;
  EXPECT_EQ(count(b_console, "/samba eval "), 1u) << b_console;
  EXPECT_EQ(count(a_console, "/samba train "), 2u) << a_console;
  EXPECT_EQ(count(a_console, "/samba eval "), 1u) << a_console;

  // The report: both rows with ppl at 1x and 2x (with standard errors), the CSV, the plots.
  const std::string md = slurp(out / "results.md");
  EXPECT_NE(md.find("| Model A |"), std::string::npos) << md;
  EXPECT_NE(md.find("| Model B |"), std::string::npos) << md;
  EXPECT_NE(md.find("PPL 2x"), std::string::npos) << md;
  EXPECT_NE(md.find(" ± "), std::string::npos) << md;
  EXPECT_NE(md.find("prefixes of the same 6 held-out blocks of 65 tokens"), std::string::npos) << md;
  const std::string csv = slurp(out / "results.csv");
  EXPECT_EQ(count(csv, "\n"), 3u) << csv;
  EXPECT_EQ(count(csv, ",done,"), 2u) << csv;
  for (const char* plot : {"loss.svg", "ppl_vs_context.svg"}) {
    const std::string svg = slurp(out / "plots" / plot);
    EXPECT_NE(svg.find("<svg"), std::string::npos) << plot;
    EXPECT_NE(svg.find("Model B"), std::string::npos) << plot;
  }
  // Each run trained for its own budget, through the strict recipe loader.
  auto eval_b = nlohmann::json::parse(slurp(out / "b" / "eval.json"));
  EXPECT_EQ(eval_b["results"].size(), 2u);
  EXPECT_EQ(eval_b["results"][1]["context"].get<int64_t>(), 64);
  EXPECT_NE(slurp(out / "b" / "recipe.yaml").find("max_tokens: 12800"), std::string::npos);
}

TEST_F(Ablate, AReportAloneIsRebuiltFromDisk) {
  std::string out;
  ASSERT_EQ(run(samba_bin() + " ablate " + (dir_ / "ablation.yaml").string() + " --report", &out), 0) << out;
  EXPECT_NE(out.find("not started"), std::string::npos) << out;
  EXPECT_TRUE(fs::exists(dir_ / "out" / "results.csv"));
}

}  // namespace
