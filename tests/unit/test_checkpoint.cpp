// Checkpoints: tensor round trips in every dtype, atomic step directories, pruning, and
// detection of the damage a crash or a bad disk leaves behind.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "base/io_test_util.h"
#include "samba/ckpt/checkpoint.h"
#include "samba/core/error.h"
#include "samba/model/model.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace samba::ckpt;
using samba::testing::error_of;
using samba::testing::slurp;
using samba::testing::spit;
using samba::testing::TempDir;
using samba::testing::tiny_config;

namespace {

samba::LanguageModel make_model(const samba::ModelConfig& cfg, uint64_t seed) {
  torch::manual_seed(seed);
  return samba::LanguageModel(cfg);
}

// Optimizer-like state in several dtypes, derived from the model's names.
NamedTensors optimizer_state(const samba::LanguageModel& model) {
  NamedTensors out;
  for (const auto& [name, p] : module_state(*model)) {
    out.emplace_back(name + ".exp_avg", torch::randn_like(p));
    out.emplace_back(name + ".exp_avg_sq", torch::rand_like(p).to(torch::kBFloat16));
  }
  out.emplace_back("step", torch::tensor(int64_t{120}));
  return out;
}

CheckpointContent content_for(const samba::LanguageModel& model, int64_t step) {
  CheckpointContent c;
  c.model = module_state(*model);
  c.optimizer = optimizer_state(model);
  c.trainer_state = {{"step", step}, {"tokens_seen", step * 4096}, {"cursor", {{"shard", 3}, {"offset", 17}}},
                     {"rng", "opaque-\xc3\xa9"}};
  c.model_config_yaml = samba::to_yaml(model->config());
  c.train_config_yaml = "lr: 0.001\nsteps: " + std::to_string(step) + "\n";
  return c;
}

NamedTensors rank_tensors(const Checkpoint& c, int rank) {
  auto m = load_tensors(c.ranks.at(static_cast<size_t>(rank)).path);
  return NamedTensors(m.begin(), m.end());
}

void expect_same(const NamedTensors& a, const NamedTensors& b) {
  std::map<std::string, torch::Tensor> mb(b.begin(), b.end());
  ASSERT_EQ(a.size(), mb.size());
  for (const auto& [name, t] : a) {
    ASSERT_TRUE(mb.count(name)) << name;
    EXPECT_EQ(mb[name].scalar_type(), t.scalar_type()) << name;
    EXPECT_TRUE(torch::equal(mb[name], t)) << name;
  }
}

std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

void expect_error(const std::function<void()>& fn, const std::vector<std::string>& needles) {
  const std::string msg = error_of(fn);
  ASSERT_FALSE(msg.empty()) << "expected an error";
  for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
}

}  // namespace

TEST(Checkpoint, TensorsRoundTripInEveryDtype) {
  TempDir tmp;
  torch::manual_seed(0);
  NamedTensors ts = {
      {"f32", torch::randn({3, 5})},
      {"f64", torch::randn({2, 2}, torch::kFloat64)},
      {"bf16", torch::randn({4, 3}).to(torch::kBFloat16)},
      {"f16", torch::randn({7}).to(torch::kFloat16)},
      {"i64", torch::randint(-1000, 1000, {6}, torch::kInt64)},
      {"i32", torch::randint(-1000, 1000, {2, 3}, torch::kInt32)},
      {"i16", torch::randint(-1000, 1000, {5}, torch::kInt16)},
      {"i8", torch::randint(-100, 100, {5}, torch::kInt8)},
      {"u8", torch::randint(0, 255, {9}, torch::kUInt8)},
      {"bool", torch::rand({4}) > 0.5},
      {"scalar", torch::tensor(3.5)},
      {"empty", torch::zeros({0, 4})},
      {"transposed", torch::randn({3, 4}).t()},  // non-contiguous view
  };
  const auto path = tmp.file("t.safetensors");
  save_tensors(path, ts, {{"format", "pt"}});
  auto back = load_tensors(path);
  ASSERT_EQ(back.size(), ts.size());
  for (const auto& [name, t] : ts) {
    ASSERT_TRUE(back.count(name)) << name;
    EXPECT_EQ(back[name].scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(back[name].sizes(), t.sizes()) << name;
    EXPECT_TRUE(torch::equal(back[name], t)) << name;
  }
  // Owned copies: changing the file afterwards must not change what was loaded.
  auto before = back["f32"].clone();
  fs::remove(path);
  EXPECT_TRUE(torch::equal(back["f32"], before));

  expect_error([&] { save_tensors(tmp.file("c.safetensors"), {{"c", torch::randn({2}, torch::kComplexFloat)}}); },
               {"'c'", "cast it"});
}

TEST(Checkpoint, RoundTripModelOptimizerTrainerStateAndConfigs) {
  TempDir tmp;
  auto cfg = tiny_config("-2");
  auto model = make_model(cfg, 1);
  auto content = content_for(model, 120);
  const std::string dir = save_checkpoint(tmp.file("ckpt"), 120, content, 0);
  EXPECT_EQ(fs::path(dir).filename(), "step_00000120");
  EXPECT_EQ(entries(dir), (std::vector<std::string>{"COMPLETE", "manifest.json", "model.safetensors", "model.yaml",
                                                     "rank_00000.safetensors", "train.yaml", "trainer.json"}));
  EXPECT_EQ(entries(tmp.file("ckpt")), std::vector<std::string>{"step_00000120"}) << "temp dir left behind";

  auto loaded = load_checkpoint(dir);
  expect_same(content.model, loaded.model);
  ASSERT_EQ(loaded.ranks.size(), 1u);
  expect_same(content.optimizer, rank_tensors(loaded, 0));
  EXPECT_EQ(loaded.trainer_state, content.trainer_state);
  EXPECT_EQ(loaded.model_config_yaml, content.model_config_yaml);
  EXPECT_EQ(loaded.train_config_yaml, content.train_config_yaml);

  // The weights reproduce the model exactly.
  auto other = make_model(cfg, 99);
  auto tokens = torch::randint(cfg.vocab_size, {2, 7}, torch::kLong);
  ASSERT_FALSE(torch::equal(other->forward(tokens), model->forward(tokens)));
  load_state_into(*other, std::map<std::string, torch::Tensor>(loaded.model.begin(), loaded.model.end()), dir);
  EXPECT_TRUE(torch::equal(other->forward(tokens), model->forward(tokens)));
  EXPECT_FALSE(other->embed->weight.grad().defined());
}

TEST(Checkpoint, HybridMambaAttentionModelRoundTrips) {
  try {
    samba::sublayer_spec('M');
    samba::sublayer_spec('*');
  } catch (const samba::Error& e) {
    GTEST_SKIP() << "mixer not registered yet: " << e.what();
  }
  TempDir tmp;
  auto cfg = tiny_config("M-*-");
  auto model = make_model(cfg, 2);
  const std::string dir = save_checkpoint(tmp.path().string(), 3, content_for(model, 3), 1);
  auto other = make_model(cfg, 3);
  auto loaded = load_checkpoint(dir);
  load_state_into(*other, std::map<std::string, torch::Tensor>(loaded.model.begin(), loaded.model.end()), dir);
  auto tokens = torch::randint(cfg.vocab_size, {1, 12}, torch::kLong);
  EXPECT_TRUE(torch::equal(other->forward(tokens), model->forward(tokens)));
}

TEST(Checkpoint, KeepLastPrunesOldCheckpointsAndCrashLeftoversOnly) {
  TempDir tmp;
  const fs::path root = tmp.path();
  auto model = make_model(tiny_config("-"), 4);
  // Things pruning must never touch: foreign files and directories, look-alike names.
  fs::create_directory(root / "notes");
  spit((root / "step_00000001.txt").string(), "mine");
  fs::create_directory(root / "step_1");
  // Crash leftovers: an unmarked step dir and a temp dir of a process that no longer exists.
  fs::create_directory(root / "step_00000002");
  fs::create_directory(root / ".tmp-step_00000004-999999999");

  for (int64_t step : {1, 3, 5, 7}) save_checkpoint(root.string(), step, content_for(model, step), 2);
  EXPECT_EQ(entries(root), (std::vector<std::string>{"notes", "step_00000001.txt", "step_00000005", "step_00000007",
                                                     "step_1"}));

  // Resuming from step 5 and saving step 6: the newer step 7 (another timeline) is not ours to delete.
  save_checkpoint(root.string(), 6, content_for(model, 6), 2);
  EXPECT_EQ(entries(root), (std::vector<std::string>{"notes", "step_00000001.txt", "step_00000005", "step_00000006",
                                                     "step_00000007", "step_1"}));
  save_checkpoint(root.string(), 7, content_for(model, 7), 2);
  EXPECT_EQ(entries(root), (std::vector<std::string>{"notes", "step_00000001.txt", "step_00000006", "step_00000007",
                                                     "step_1"}));
  // keep_last = 0 keeps everything.
  save_checkpoint(root.string(), 8, content_for(model, 8), 0);
  save_checkpoint(root.string(), 9, content_for(model, 9), 0);
  EXPECT_EQ(fs::exists(root / "step_00000006") + fs::exists(root / "step_00000008") + fs::exists(root / "step_00000009"), 3);
}

TEST(Checkpoint, ResavingTheSameStepReplacesIt) {
  TempDir tmp;
  auto model = make_model(tiny_config("-"), 5);
  auto first = content_for(model, 10);
  save_checkpoint(tmp.path().string(), 10, first, 3);
  auto second = content_for(model, 10);
  second.trainer_state["tokens_seen"] = 1;
  const auto dir = save_checkpoint(tmp.path().string(), 10, second, 3);
  EXPECT_EQ(entries(tmp.path()), std::vector<std::string>{"step_00000010"});
  auto loaded = load_checkpoint(dir);
  EXPECT_EQ(loaded.trainer_state["tokens_seen"], 1);
  expect_same(second.optimizer, rank_tensors(loaded, 0));
}

// A process killed (SIGKILL) at any moment while it re-saves an existing step never leaves that
// step without a complete, verifiable copy: the new copy is swapped in atomically.
TEST(Checkpoint, KillDuringAResaveNeverLosesTheStep) {
  TempDir tmp;
  auto model = make_model(tiny_config("-"), 5);
  const std::string root = tmp.path().string();
  save_checkpoint(root, 10, content_for(model, 10), 3);
  const std::string step_dir = root + "/step_00000010";
  for (int trial = 0; trial < 12; ++trial) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      auto c = content_for(model, 10);
      for (int i = 0;; ++i) {
        c.trainer_state["tokens_seen"] = i;
        save_checkpoint(root, 10, c, 3);
      }
    }
    // Kill at a different point of the save sequence each time.
    ::usleep(static_cast<useconds_t>(20000 + trial * 7919 % 60000));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_NO_THROW(verify_checkpoint(step_dir)) << "trial " << trial;
    EXPECT_EQ(find_latest_checkpoint(root), step_dir);
  }
  // The leftovers of the killed writers are pruned by the next save.
  save_checkpoint(root, 11, content_for(model, 11), 3);
  for (const auto& name : entries(tmp.path())) EXPECT_EQ(name.rfind(".tmp-", 0), std::string::npos) << name;
}

TEST(Checkpoint, FailedSaveLeavesNothing) {
  TempDir tmp;
  auto model = make_model(tiny_config("-"), 6);
  auto content = content_for(model, 4);
  content.optimizer.emplace_back("broken", torch::Tensor());
  expect_error([&] { save_checkpoint(tmp.path().string(), 4, content, 0); }, {"'broken'", "undefined"});
  EXPECT_TRUE(entries(tmp.path()).empty());
}

TEST(Checkpoint, FindLatestUsesStepNumbersAndIgnoresIncompleteAndTempDirs) {
  TempDir tmp;
  const fs::path root = tmp.path();
  EXPECT_EQ(find_latest_checkpoint(root.string()), "");
  EXPECT_EQ(find_latest_checkpoint((root / "missing").string()), "");
  auto model = make_model(tiny_config("-"), 7);
  // Saved newest-first so modification times disagree with step numbers.
  save_checkpoint(root.string(), 20, content_for(model, 20), 0);
  save_checkpoint(root.string(), 9, content_for(model, 9), 0);
  EXPECT_EQ(find_latest_checkpoint(root.string()), (root / "step_00000020").string());

  fs::copy(root / "step_00000020", root / "step_00000030", fs::copy_options::recursive);
  fs::remove(root / "step_00000030" / "COMPLETE");
  fs::copy(root / "step_00000020", root / ".tmp-step_00000040-1", fs::copy_options::recursive);
  EXPECT_EQ(find_latest_checkpoint(root.string()), (root / "step_00000020").string());
  EXPECT_EQ(resolve_checkpoint_dir(root.string()), (root / "step_00000020").string());
}

TEST(Checkpoint, TruncatedFileIsDetected) {
  TempDir tmp;
  auto model = make_model(tiny_config("-2"), 8);
  const auto dir = save_checkpoint(tmp.path().string(), 1, content_for(model, 1), 0);
  const auto path = dir + "/model.safetensors";
  const std::string bytes = slurp(path);
  spit(path, bytes.substr(0, bytes.size() - 100));
  expect_error([&] { verify_checkpoint(dir); },
               {dir, "model.safetensors", "truncated", std::to_string(bytes.size() - 100),
                std::to_string(bytes.size()), "delete this checkpoint"});
  expect_error([&] { load_checkpoint(dir); }, {"model.safetensors", "truncated"});
}

TEST(Checkpoint, FlippedByteIsDetectedByCrc) {
  TempDir tmp;
  auto model = make_model(tiny_config("-2"), 9);
  const auto dir = save_checkpoint(tmp.path().string(), 2, content_for(model, 2), 0);
  const auto path = dir + "/rank_00000.safetensors";
  std::string bytes = slurp(path);
  bytes[bytes.size() / 2] ^= 0x10;
  spit(path, bytes);
  expect_error([&] { verify_checkpoint(dir); }, {"rank_00000.safetensors", "CRC32C", "corrupt"});
  expect_error([&] { load_checkpoint(dir); }, {"rank_00000.safetensors", "CRC32C"});

  // A file the manifest lists that has vanished is named too.
  fs::remove(dir + "/train.yaml");
  expect_error([&] { verify_checkpoint(dir); }, {"train.yaml", "missing"});
}

TEST(Checkpoint, MissingMarkerMeansIncomplete) {
  TempDir tmp;
  auto model = make_model(tiny_config("-"), 10);
  const auto dir = save_checkpoint(tmp.path().string(), 3, content_for(model, 3), 0);
  EXPECT_NO_THROW(verify_checkpoint(dir));
  fs::remove(dir + "/COMPLETE");
  expect_error([&] { verify_checkpoint(dir); }, {dir, "incomplete", "being written when the run stopped"});
  EXPECT_EQ(find_latest_checkpoint(tmp.path().string()), "");
}

TEST(Checkpoint, LoadStateIntoNamesMissingUnexpectedAndMismatchedTensors) {
  auto cfg = tiny_config("-2");
  auto model = make_model(cfg, 11);
  auto state = module_state(*model);
  std::map<std::string, torch::Tensor> good(state.begin(), state.end());
  EXPECT_NO_THROW(load_state_into(*model, good, "good.safetensors"));

  auto missing = good;
  missing.erase("layers.1.mixer.down.weight");
  expect_error([&] { load_state_into(*model, missing, "run/x.safetensors"); },
               {"run/x.safetensors", "1 missing", "layers.1.mixer.down.weight"});

  auto extra = good;
  extra["layers.9.norm.weight"] = torch::ones({cfg.d_model});
  expect_error([&] { load_state_into(*model, extra, "origin-A"); }, {"origin-A", "1 unexpected", "layers.9.norm.weight"});

  auto shaped = good;
  shaped["norm_f.weight"] = torch::ones({cfg.d_model + 1});
  expect_error([&] { load_state_into(*model, shaped, "origin-B"); },
               {"origin-B", "mismatched", "norm_f.weight", "[33]", "[32]"});

  auto typed = good;
  typed["norm_f.weight"] = torch::ones({cfg.d_model}, torch::kInt64);
  expect_error([&] { load_state_into(*model, typed, "origin-C"); }, {"norm_f.weight", "Long"});

  // A failed load changes nothing.
  auto before = model->norm_f->weight.clone();
  shaped["embed.weight"] = torch::zeros_like(good["embed.weight"]);
  EXPECT_THROW(load_state_into(*model, shaped, "x"), samba::Error);
  EXPECT_TRUE(torch::equal(model->norm_f->weight, before));
  EXPECT_FALSE(torch::equal(model->embed->weight, shaped["embed.weight"]));
}
