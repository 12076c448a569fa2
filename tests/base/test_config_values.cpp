// The strict reader and the training recipe refuse every impossible value with a message naming
// the key and the allowed range: duplicated keys (both places), integers that do not fit,
// non-finite numbers, products of sizes that overflow, directories and binary files.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "base/io_test_util.h"
#include "samba/core/config.h"
#include "samba/core/error.h"
#include "samba/core/train_config.h"
#include "samba/core/yaml_reader.h"

namespace fs = std::filesystem;
using samba::testing::TempDir;

namespace {

const char* kModel = R"(name: t
vocab_size: 100
d_model: 64
pattern: "M-*-"
mlp_hidden: 128
seq_len: 64
attention: {n_heads: 4, window: 32}
)";

const char* kRecipe = R"(model: model.yaml
data: data/x
run_dir: runs/x
micro_batch: 2
max_tokens: 4096
)";

template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const samba::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a samba::Error";
  return "";
}

#define EXPECT_HAS(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << "'" << (part) << "' not in: " << (msg)

struct Recipe {
  TempDir dir;
  Recipe() { samba::testing::spit(dir.file("model.yaml"), kModel); }
  // Loads kRecipe plus `extra` lines (a later key replaces nothing: duplicates are errors, so
  // callers add only keys kRecipe lacks, or use overrides).
  samba::TrainConfig load(const std::string& extra = "", const std::vector<std::string>& overrides = {}) {
    samba::testing::spit(dir.file("recipe.yaml"), kRecipe + extra);
    return samba::load_train_config(dir.file("recipe.yaml"), overrides);
  }
  std::string error(const std::string& extra, const std::vector<std::string>& overrides = {}) {
    return error_of([&] { load(extra, overrides); });
  }
};

}  // namespace

TEST(YamlReader, DuplicateKeysNameBothPlaces) {
  std::string msg = error_of([] { samba::load_yaml_text("a: 1\nb: 2\na: 3\n", "f.yaml"); });
  EXPECT_HAS(msg, "f.yaml:3:1: key 'a' appears twice (first at f.yaml:1:1)");
  msg = error_of([] { samba::load_yaml_text("opt:\n  lr: 1\n  lr: 2\n", "f.yaml"); });
  EXPECT_HAS(msg, "f.yaml:3:3: key 'opt.lr' appears twice (first at f.yaml:2:3)");
  msg = error_of([] { samba::load_yaml_text("x: [{a: 1, a: 2}]\n", "f.yaml"); });
  EXPECT_HAS(msg, "'x.a' appears twice");
  // The same key in different maps is fine.
  EXPECT_NO_THROW(samba::load_yaml_text("a: {k: 1}\nb: {k: 2}\n", "f.yaml"));
}

TEST(YamlReader, DirectoriesEmptyAndBinaryFiles) {
  TempDir dir;
  std::string msg = error_of([&] { samba::load_yaml_file(dir.path().string()); });
  EXPECT_HAS(msg, "is a directory");
  samba::testing::spit(dir.file("empty.yaml"), "");
  EXPECT_HAS(error_of([&] { samba::load_yaml_file(dir.file("empty.yaml")); }), "the file is empty");
  samba::testing::spit(dir.file("bin.yaml"), std::string("\x7f" "ELF\0\0\x01\x02", 8));
  EXPECT_HAS(error_of([&] { samba::load_yaml_file(dir.file("bin.yaml")); }), "NUL bytes");
  EXPECT_HAS(error_of([&] { samba::load_yaml_file(dir.file("missing.yaml")); }), "cannot open");
}

TEST(YamlReader, IntegersThatDoNotFitAreRangeErrors) {
  samba::YamlMap m(samba::load_yaml_text("a: 99999999999999999999\nb: 1e30\nc: -4\nd: 4e3\ne: 1.5\n", "f.yaml"),
                   "f.yaml");
  int64_t v = 0;
  std::string msg = error_of([&] { m.read("a", v, 1, 100); });
  EXPECT_HAS(msg, "key 'a': must be between 1 and 100, got 99999999999999999999 (does not fit");
  msg = error_of([&] { m.read("b", v, 0, std::numeric_limits<int64_t>::max()); });
  EXPECT_HAS(msg, "key 'b'");
  EXPECT_HAS(msg, "does not fit a 64-bit integer");
  EXPECT_HAS(error_of([&] { m.read("c", v, 0, 10); }), "must be between 0 and 10, got -4");
  m.read("d", v, 0, 10000);
  EXPECT_EQ(v, 4000);
  EXPECT_HAS(error_of([&] { m.read("e", v, 0, 10); }), "must be an integer (between 0 and 10), got '1.5'");
}

TEST(YamlReader, NonFiniteNumbersAreRefusedWhateverTheRange) {
  const double inf = std::numeric_limits<double>::infinity();
  for (const char* s : {".inf", "-.inf", ".nan", ".NaN", "inf", "nan", "1e999"}) {
    samba::YamlMap m(samba::load_yaml_text(std::string("x: ") + s + "\n", "f.yaml"), "f.yaml");
    double v = 0;
    const std::string msg = error_of([&] { m.read("x", v, -inf, inf); });
    EXPECT_HAS(msg, "key 'x': must be a finite number");
  }
}

TEST(TrainRecipe, ValidRecipeResolvesSizes) {
  Recipe r;
  samba::TrainConfig c = r.load("global_batch_tokens: 512\n");
  EXPECT_EQ(c.seq_len, 64);
  EXPECT_EQ(c.accumulation_steps(), 4);
  EXPECT_EQ(c.total_steps(), 8);
}

TEST(TrainRecipe, SizeProductsAndLimitsNameTheKey) {
  Recipe r;
  EXPECT_HAS(r.error("", {"max_tokens=9223372036854775807"}), "key 'max_tokens': must be between 1 and 1125899906842624");
  EXPECT_HAS(r.error("global_batch_tokens: 8192\n"), "key 'global_batch_tokens': (8192) exceeds max_tokens (4096)");
  EXPECT_HAS(r.error("", {"max_tokens=64"}), "key 'max_tokens': (64) is less than one micro-batch");
  EXPECT_HAS(r.error("global_batch_tokens: 100\n"), "must be a multiple of micro_batch x seq_len (128)");
  EXPECT_HAS(r.error("seq_len: 4611686018427387904\n"), "key 'seq_len': must be between 0 and 16777216");
  EXPECT_HAS(r.error("", {"model.seq_len=20000000"}), "key 'seq_len': (20000000, from the model");
  EXPECT_HAS(r.error("seq_len: 16\n"), "shorter than the model's attention window");
}

TEST(TrainRecipe, EveryNumericKeyHasARange) {
  Recipe r;
  struct Case {
    const char* setting;
    const char* expect;
  };
  const Case cases[] = {
      {"micro_batch=0", "key 'micro_batch': must be between 1 and 1048576, got 0"},
      {"micro_batch=1e9", "key 'micro_batch': must be between 1 and 1048576"},
      {"seed=-1", "key 'seed': must be >= 0, got -1"},
      {"threads=-1", "key 'threads': must be between 0 and 4096, got -1"},
      {"log_every=0", "key 'log_every': must be >= 1, got 0"},
      {"eval_every=-2", "key 'eval_every': must be >= 0, got -2"},
      {"eval_tokens=0", "key 'eval_tokens': must be >= 1, got 0"},
      {"checkpoint_every=-1", "key 'checkpoint_every'"},
      {"keep_checkpoints=-1", "key 'keep_checkpoints': must be between 0 and 1048576"},
      {"max_skipped_steps=0", "key 'max_skipped_steps'"},
      {"peak_tflops=.inf", "key 'peak_tflops': must be a finite number"},
      {"peak_tflops=-1", "key 'peak_tflops': must be between 0 and"},
      {"optimizer.lr=.nan", "key 'optimizer.lr': must be a finite number"},
      {"optimizer.lr=11", "key 'optimizer.lr': must be between 0 and 10"},
      {"optimizer.beta2=1", "key 'optimizer.beta2': must be between 0 and"},
      {"optimizer.eps=-1e-8", "key 'optimizer.eps'"},
      {"optimizer.warmup_fraction=2", "key 'optimizer.warmup_fraction'"},
      {"optimizer.grad_clip=1e10", "key 'optimizer.grad_clip'"},
      {"optimizer.weight_decay=-0.1", "key 'optimizer.weight_decay'"},
      {"precision=fp16", "key 'precision': must be one of: auto, fp32, bf16"},
      {"nan_policy=ignore", "key 'nan_policy'"},
  };
  for (const auto& c : cases) EXPECT_HAS(r.error("", {c.setting}), c.expect);
}

TEST(TrainRecipe, ModelPathsThatAreDirectoriesOrMissing) {
  Recipe r;
  fs::create_directories(r.dir.path() / "models");
  EXPECT_HAS(r.error("", {"model=models"}), "key 'model': '");
  EXPECT_HAS(r.error("", {"model=models"}), "is a directory");
  EXPECT_HAS(r.error("", {"model=nope.yaml"}), "does not exist");
  // An include that names a directory says so too (not "the file is empty").
  samba::testing::spit(r.dir.file("child.yaml"), "include: models\n");
  EXPECT_HAS(r.error("", {"model=child.yaml"}), "is a directory");
}

TEST(TrainRecipe, DuplicateKeyInARecipe) {
  Recipe r;
  EXPECT_HAS(r.error("micro_batch: 4\n"), "key 'micro_batch' appears twice (first at");
}
