// Export: checkpoint -> safetensors + config.json + model.yaml (+ tokenizer), checked by the
// independent Python reader and by reloading the model and comparing logits.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/io_test_util.h"
#include "samba/ckpt/checkpoint.h"
#include "samba/ckpt/export.h"
#include "samba/core/error.h"
#include "samba/io/safetensors.h"
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

bool have_python() { return std::system("command -v python3 > /dev/null 2>&1") == 0; }

int run_checker(const std::string& args) {
  const std::string cmd =
      std::string("python3 ") + SAMBA_SOURCE_DIR + "/tests/tools/check_safetensors.py --quiet " + args;
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// A run directory as the trainer leaves it: <run>/checkpoints/step_*.
struct Run {
  samba::ModelConfig cfg;
  samba::LanguageModel model{nullptr};
  std::string run_dir, step_dir, tokenizer;
};

Run make_run(const TempDir& tmp, const samba::ModelConfig& cfg, uint64_t seed, int64_t step = 50) {
  Run r;
  r.cfg = cfg;
  torch::manual_seed(seed);
  r.model = samba::LanguageModel(cfg);
  r.run_dir = tmp.file("run");
  r.tokenizer = tmp.file("spm.model");
  spit(r.tokenizer, std::string("fake sentencepiece\0bytes", 24));
  CheckpointContent c;
  c.model = module_state(*r.model);
  c.optimizer = {{"embed.weight.exp_avg", torch::zeros({cfg.vocab_size, cfg.d_model})}};
  c.trainer_state = {{"step", step}, {"tokenizer_path", r.tokenizer}};
  c.model_config_yaml = samba::to_yaml(cfg);
  c.train_config_yaml = "steps: 100\n";
  r.step_dir = save_checkpoint(r.run_dir + "/checkpoints", step, c, 0);
  return r;
}

torch::Tensor logits(samba::LanguageModel& m, const torch::Tensor& tokens) {
  torch::NoGradGuard g;
  return m->forward(tokens);
}

std::string names_of(const samba::LanguageModel& m) {
  std::string s;
  for (const auto& [name, t] : module_state(*m)) s += (s.empty() ? "" : ",") + name;
  return s;
}

}  // namespace

TEST(Export, Float32ExportReproducesTheModelExactly) {
  TempDir tmp;
  auto run = make_run(tmp, tiny_config("-2"), 1);
  const auto out = tmp.file("export");
  export_model(run.step_dir, out, {});

  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(out)) files.push_back(e.path().filename().string());
  std::sort(files.begin(), files.end());
  EXPECT_EQ(files, (std::vector<std::string>{"config.json", "model.safetensors", "model.yaml", "tokenizer.model"}));
  EXPECT_EQ(slurp(out + "/tokenizer.model"), slurp(run.tokenizer));
  for (const auto& e : fs::directory_iterator(tmp.path()))
    EXPECT_EQ(e.path().filename().string().find(".export"), std::string::npos) << "staging dir left behind";

  samba::io::SafetensorsFile st(out + "/model.safetensors");
  EXPECT_EQ(st.metadata().at("format"), "pt");
  EXPECT_TRUE(st.metadata().count("samba_version"));
  EXPECT_EQ(st.info("embed.weight").dtype, "F32");
  EXPECT_FALSE(st.contains("embed.weight.exp_avg")) << "optimizer state leaked into the export";

  auto loaded = load_model(out);
  EXPECT_EQ(loaded.source, out);
  EXPECT_EQ(loaded.tokenizer_path, out + "/tokenizer.model");
  EXPECT_EQ(loaded.config.layers, run.cfg.layers);
  auto tokens = torch::randint(run.cfg.vocab_size, {2, 9}, torch::kLong);
  EXPECT_TRUE(torch::equal(logits(loaded.model, tokens), logits(run.model, tokens)));
}

TEST(Export, PythonCheckerAcceptsTheExport) {
  if (!have_python()) GTEST_SKIP() << "python3 not on PATH";
  TempDir tmp;
  auto run = make_run(tmp, tiny_config("-2"), 2);
  const auto out = tmp.file("export");
  export_model(run.run_dir, out, {"bfloat16", ""});
  const std::string file = out + "/model.safetensors";
  EXPECT_EQ(run_checker(file + " --expect-names " + names_of(run.model)), 0);
  EXPECT_NE(run_checker(file + " --expect-names " + names_of(run.model) + ",lm_head.weight"), 0)
      << "the checker must notice a missing tensor";
}

TEST(Export, ConfigJsonHasTheDocumentedKeys) {
  TempDir tmp;
  auto run = make_run(tmp, tiny_config("-2"), 3);
  const auto out = tmp.file("export");
  export_model(run.step_dir, out, {"bfloat16", ""});
  auto j = nlohmann::json::parse(slurp(out + "/config.json"));
  for (const char* key : {"architectures", "model_type", "vocab_size", "hidden_size", "intermediate_size",
                          "num_hidden_layers", "layer_pattern", "layer_types", "num_attention_heads",
                          "num_key_value_heads", "head_dim", "sliding_window", "rope_theta", "rms_norm_eps",
                          "tie_word_embeddings", "mamba", "torch_dtype", "samba_config"})
    EXPECT_TRUE(j.contains(key)) << key;
  // Our own layout, so not FLA's "samba" model type (that is what --format hf writes).
  EXPECT_EQ(j["architectures"], nlohmann::json::array({"SambaHybridForCausalLM"}));
  EXPECT_EQ(j["model_type"], "samba_hybrid");
  EXPECT_EQ(j["vocab_size"], run.cfg.vocab_size);
  EXPECT_EQ(j["hidden_size"], run.cfg.d_model);
  EXPECT_EQ(j["num_hidden_layers"], 2);
  EXPECT_EQ(j["layer_pattern"], "-2");
  EXPECT_EQ(j["layer_types"].size(), 2u);
  EXPECT_EQ(j["torch_dtype"], "bfloat16");
  EXPECT_TRUE(j["rope_theta"].is_null()) << "no attention layer, so no RoPE";
  EXPECT_TRUE(j["sliding_window"].is_null());
  EXPECT_EQ(j["tie_word_embeddings"], true);
  for (const char* key : {"d_state", "d_conv", "expand", "dt_rank"}) EXPECT_TRUE(j["mamba"][key].is_number()) << key;
  // The embedded samba config keeps YAML types: quoted strings stay strings.
  const auto& sc = j["samba_config"];
  EXPECT_EQ(sc["pattern"], "-2");
  EXPECT_EQ(sc["d_model"], run.cfg.d_model);
  EXPECT_EQ(sc["tie_embeddings"], true);
  EXPECT_DOUBLE_EQ(sc["norm_eps"].get<double>(), run.cfg.norm_eps);
  EXPECT_TRUE(sc["mamba"].is_object());
  EXPECT_EQ(slurp(out + "/model.yaml"), samba::to_yaml(run.cfg));
}

TEST(Export, Bfloat16ExportIsWithinBfloat16Tolerance) {
  TempDir tmp;
  auto run = make_run(tmp, tiny_config("-2"), 4);
  const auto out = tmp.file("export-bf16");
  export_model(run.step_dir, out, {"bfloat16", ""});
  samba::io::SafetensorsFile st(out + "/model.safetensors");
  EXPECT_EQ(st.info("embed.weight").dtype, "BF16");
  auto loaded = load_model(out);
  auto tokens = torch::randint(run.cfg.vocab_size, {2, 9}, torch::kLong);
  auto a = logits(loaded.model, tokens), b = logits(run.model, tokens);
  EXPECT_FALSE(torch::equal(a, b)) << "bf16 rounding should change something";
  EXPECT_LT(samba::testing::rel_error(a, b), 2e-2);
}

TEST(Export, LoadModelFromRunAndStepDirectories) {
  TempDir tmp;
  auto run = make_run(tmp, tiny_config("-2"), 5);
  auto tokens = torch::randint(run.cfg.vocab_size, {1, 6}, torch::kLong);
  auto from_run = load_model(run.run_dir);
  EXPECT_EQ(from_run.source, run.step_dir);
  EXPECT_EQ(from_run.tokenizer_path, run.tokenizer);
  EXPECT_TRUE(torch::equal(logits(from_run.model, tokens), logits(run.model, tokens)));

  auto from_step = load_model(run.step_dir);
  EXPECT_TRUE(torch::equal(logits(from_step.model, tokens), logits(run.model, tokens)));

  // A damaged checkpoint is refused, naming the file.
  std::string bytes = slurp(run.step_dir + "/model.safetensors");
  bytes[bytes.size() - 5] ^= 1;
  spit(run.step_dir + "/model.safetensors", bytes);
  const std::string msg = error_of([&] { load_model(run.step_dir); });
  EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("CRC32C"), std::string::npos) << msg;
}

TEST(Export, TiedModelsExportNoLmHeadUntiedOnesDo) {
  for (bool tied : {true, false}) {
    TempDir tmp;
    auto cfg = tiny_config("-2");
    cfg.tie_embeddings = tied;
    auto run = make_run(tmp, cfg, 6);
    const auto out = tmp.file("export");
    export_model(run.run_dir, out, {});
    samba::io::SafetensorsFile st(out + "/model.safetensors");
    EXPECT_EQ(st.contains("lm_head.weight"), !tied) << "tied=" << tied;
    EXPECT_EQ(nlohmann::json::parse(slurp(out + "/config.json"))["tie_word_embeddings"], tied);
    auto loaded = load_model(out);
    auto tokens = torch::randint(cfg.vocab_size, {1, 5}, torch::kLong);
    EXPECT_TRUE(torch::equal(logits(loaded.model, tokens), logits(run.model, tokens))) << "tied=" << tied;
  }
}

TEST(Export, HybridMambaAttentionModelExports) {
  try {
    samba::sublayer_spec('M');
    samba::sublayer_spec('*');
  } catch (const samba::Error& e) {
    GTEST_SKIP() << "mixer not registered yet: " << e.what();
  }
  TempDir tmp;
  auto run = make_run(tmp, tiny_config("M-*-"), 7);
  const auto out = tmp.file("export");
  export_model(run.run_dir, out, {});
  auto j = nlohmann::json::parse(slurp(out + "/config.json"));
  EXPECT_EQ(j["sliding_window"], 8);
  EXPECT_EQ(j["num_attention_heads"], 4);
  EXPECT_TRUE(j["rope_theta"].is_number());
  auto loaded = load_model(out);
  auto tokens = torch::randint(run.cfg.vocab_size, {1, 12}, torch::kLong);
  EXPECT_TRUE(torch::equal(logits(loaded.model, tokens), logits(run.model, tokens)));
  if (have_python()) EXPECT_EQ(run_checker(out + "/model.safetensors --expect-names " + names_of(run.model)), 0);
}

TEST(Export, ReplacesAnOldExportButNothingElseAndFailsCleanly) {
  TempDir tmp;
  auto run = make_run(tmp, tiny_config("-2"), 8);
  const auto out = tmp.file("export");
  export_model(run.step_dir, out, {});
  export_model(run.step_dir, out, {"bfloat16", ""});  // over a previous export: fine
  EXPECT_EQ(samba::io::SafetensorsFile(out + "/model.safetensors").info("embed.weight").dtype, "BF16");

  const auto foreign = tmp.file("foreign");
  fs::create_directories(foreign);
  spit(foreign + "/notes.txt", "keep me");
  std::string msg = error_of([&] { export_model(run.step_dir, foreign, {}); });
  EXPECT_NE(msg.find("notes.txt"), std::string::npos) << msg;
  EXPECT_EQ(slurp(foreign + "/notes.txt"), "keep me");

  msg = error_of([&] { export_model(run.step_dir, tmp.file("bad-dtype"), {"int8", ""}); });
  EXPECT_NE(msg.find("float16"), std::string::npos) << "the documented dtypes are the accepted ones: " << msg;
  EXPECT_NE(msg.find("int8"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(tmp.file("bad-dtype")));

  fs::remove(run.step_dir + "/COMPLETE");
  msg = error_of([&] { export_model(run.step_dir, tmp.file("from-incomplete"), {}); });
  EXPECT_NE(msg.find("incomplete"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(tmp.file("from-incomplete")));
  msg = error_of([&] { export_model(run.run_dir, tmp.file("from-run"), {}); });
  EXPECT_NE(msg.find("no complete checkpoint"), std::string::npos) << msg;
  for (const auto& e : fs::directory_iterator(tmp.path()))
    EXPECT_EQ(e.path().filename().string().find(".export"), std::string::npos) << "staging dir left behind";
}
