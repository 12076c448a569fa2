// `--set KEY=VALUE` overrides go through the strict reader: they change values like the file
// would, and a bad key or value is an error naming the override, not a line of the file.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "base/io_test_util.h"
#include "samba/core/config.h"
#include "samba/core/error.h"
#include "samba/core/overrides.h"
#include "samba/core/train_config.h"

namespace fs = std::filesystem;
using samba::testing::TempDir;

namespace {

const char* kModel = R"(name: t
vocab_size: 100
d_model: 64
pattern: "M-*-"
repeat: 2
mlp_hidden: 128
seq_len: 64
attention: {n_heads: 4, window: 32}
)";

const char* kRecipe = R"(model: model.yaml
data: data/x
run_dir: runs/x
micro_batch: 2
max_tokens: 4096
optimizer:
  lr: 1.0e-3
  min_lr: 1.0e-4
)";

struct Files {
  TempDir dir;
  std::string model = dir.file("model.yaml");
  std::string recipe = dir.file("recipe.yaml");
  Files() {
    samba::testing::spit(model, kModel);
    samba::testing::spit(recipe, kRecipe);
  }
};

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

}  // namespace

TEST(Overrides, ChangeModelValuesLikeTheFile) {
  Files f;
  samba::ModelConfig c = samba::load_model_config(
      f.model, {"attention.window=16", "d_model=128", "pattern=", "layers=[mamba, mlp]", "mamba.d_state=8"});
  EXPECT_EQ(c.attention.window, 16);
  EXPECT_EQ(c.d_model, 128);
  EXPECT_EQ(c.layers, "M-");
  EXPECT_EQ(c.mamba.d_state, 8);
  // A later override of the same key wins, as on a command line.
  EXPECT_EQ(samba::load_model_config(f.model, {"repeat=1", "repeat=3"}).layers, "M-*-M-*-M-*-");
}

TEST(Overrides, QuotedSpecialCharactersAndCreatedSections) {
  Files f;
  samba::ModelConfig c = samba::load_model_config(f.model, {"pattern=~", "layers=[M, \"*\", \"-\"]", "gla.chunk_size=32"});
  EXPECT_EQ(c.layers, "M*-");
  EXPECT_EQ(c.gla.chunk_size, 32);
}

TEST(Overrides, LayerCharactersThatAreYamlSyntaxAreTakenLiterally) {
  Files f;
  // '*' starts a YAML alias, so these are not valid YAML; as flat lists or single words they
  // are unambiguous.
  EXPECT_EQ(samba::load_model_config(f.model, {"pattern=", "layers=[M,*]"}).layers, "M*");
  EXPECT_EQ(samba::load_model_config(f.model, {"pattern=", "layers=[M, -, *, -]"}).layers, "M-*-");
  EXPECT_EQ(samba::load_model_config(f.model, {"pattern=*-M-"}).layers, "*-M-*-M-");
  const std::string msg = error_of([&] { samba::load_model_config(f.model, {"pattern=", "layers=[M,*,X]"}); });
  EXPECT_HAS(msg, "--set layers=[M,*,X]: key 'layers'");
  EXPECT_HAS(msg, "unknown layer 'X'");
}

TEST(Overrides, OverrideWinsOverAnIncludedBase) {
  Files f;
  samba::testing::spit(f.dir.file("child.yaml"), "include: model.yaml\nname: child\n");
  samba::ModelConfig c = samba::load_model_config(f.dir.file("child.yaml"), {"attention.window=8"});
  EXPECT_EQ(c.attention.window, 8);
  EXPECT_EQ(c.attention.n_heads, 4);  // the rest of the included section stays
}

TEST(Overrides, MisspelledKeyIsAnErrorNamingTheOverride) {
  Files f;
  const std::string msg = error_of([&] { samba::load_model_config(f.model, {"attention.windw=512"}); });
  EXPECT_EQ(msg.rfind("--set attention.windw=512: unknown key 'attention.windw'", 0), 0u) << msg;
  EXPECT_HAS(msg, "window");  // the allowed keys are listed
  const std::string top = error_of([&] { samba::load_model_config(f.model, {"d_modle=3"}); });
  EXPECT_EQ(top.rfind("--set d_modle=3: unknown key 'd_modle'", 0), 0u) << top;
}

TEST(Overrides, BadValuesAreErrorsNamingTheOverride) {
  Files f;
  auto msg = error_of([&] { samba::load_model_config(f.model, {"attention.window=wide"}); });
  EXPECT_HAS(msg, "--set attention.window=wide: key 'attention.window'");
  EXPECT_HAS(msg, "integer");
  msg = error_of([&] { samba::load_model_config(f.model, {"d_model="}); });  // removed: back to required
  EXPECT_HAS(msg, "key 'd_model': is required");
  // Both a pattern and a layer list: the file's usual error, placed at the override.
  msg = error_of([&] { samba::load_model_config(f.model, {"layers=[M]"}); });
  EXPECT_HAS(msg, "--set layers=[M]: key 'layers'");
  EXPECT_HAS(msg, "not both");
  msg = error_of([&] { samba::load_model_config(f.model, {"attention={windw: 5}"}); });
  EXPECT_HAS(msg, "--set attention={windw: 5}: unknown key 'attention.windw'");
  msg = error_of([&] { samba::load_model_config(f.model, {"name=[a, {b]"}); });
  EXPECT_HAS(msg, "--set name=[a, {b]: the value is not valid YAML");
  msg = error_of([&] { samba::load_model_config(f.model, {"layers=[M,,*]"}); });
  EXPECT_HAS(msg, "not valid YAML");
  msg = error_of([&] { samba::load_model_config(f.model, {"d_model"}); });
  EXPECT_HAS(msg, "--set d_model: expected KEY=VALUE");
  msg = error_of([&] { samba::load_model_config(f.model, {"attention..window=3"}); });
  EXPECT_HAS(msg, "is not a key path");
  msg = error_of([&] { samba::load_model_config(f.model, {"d_model.x=3"}); });
  EXPECT_HAS(msg, "--set d_model.x=3: 'd_model'");
  EXPECT_HAS(msg, "not a map");
}

TEST(Overrides, RecipeRoutesModelKeysToTheModel) {
  Files f;
  samba::TrainConfig c = samba::load_train_config(
      f.recipe, {"optimizer.lr=2e-3", "model.attention.window=16", "seed=7", "model.name=renamed"});
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 2e-3);
  EXPECT_EQ(c.model.attention.window, 16);
  EXPECT_EQ(c.model.name, "renamed");
  EXPECT_EQ(c.seed, 7u);
  auto msg = error_of([&] { samba::load_train_config(f.recipe, {"model.attention.windw=512"}); });
  EXPECT_EQ(msg.rfind("--set model.attention.windw=512: unknown key 'attention.windw'", 0), 0u) << msg;
  msg = error_of([&] { samba::load_train_config(f.recipe, {"optimizer.lrr=1"}); });
  EXPECT_EQ(msg.rfind("--set optimizer.lrr=1: unknown key 'optimizer.lrr'", 0), 0u) << msg;
  msg = error_of([&] { samba::load_train_config(f.recipe, {"micro_batch=0"}); });
  EXPECT_HAS(msg, "--set micro_batch=0: key 'micro_batch'");
  EXPECT_HAS(msg, "between 1 and");
}

TEST(Overrides, ModelPathItselfCanBeOverridden) {
  Files f;
  std::string other = kModel;
  other.replace(other.find("name: t"), 7, "name: other");
  samba::testing::spit(f.dir.file("other.yaml"), other);
  EXPECT_EQ(samba::load_train_config(f.recipe, {"model=other.yaml"}).model.name, "other");
}
