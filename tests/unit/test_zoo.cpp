// The model zoo: every paper-size config lands within 3% of the paper's parameter count
// (samba-421m within 2%); every tiny config builds, its analytic count equals the real one,
// and a forward/backward pass runs.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "samba/model/analysis.h"
#include "samba/model/model.h"

namespace fs = std::filesystem;

namespace {

std::vector<fs::path> zoo(bool tiny) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(fs::path(SAMBA_SOURCE_DIR) / "configs" / "models")) {
    const std::string name = e.path().filename().string();
    if (e.path().extension() != ".yaml") continue;
    if ((name.rfind("tiny-", 0) == 0) == tiny) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST(Zoo, PaperSizesMatchThePaper) {
  int checked = 0;
  for (const auto& path : zoo(false)) {
    samba::ModelConfig cfg = samba::load_model_config(path.string());
    auto s = samba::summarize(cfg);
    if (cfg.paper_params <= 0) continue;
    const double dev = std::abs(static_cast<double>(s.total_params) - cfg.paper_params) / cfg.paper_params;
    const double limit = cfg.name == "samba-421m" ? 0.02 : 0.03;
    EXPECT_LT(dev, limit) << cfg.name << ": " << s.total_params << " vs paper " << cfg.paper_params;
    std::printf("  %-26s %14lld  paper %6.0fM  %+.2f%%\n", cfg.name.c_str(), static_cast<long long>(s.total_params),
                cfg.paper_params / 1e6, 100.0 * (static_cast<double>(s.total_params) - cfg.paper_params) / cfg.paper_params);
    ++checked;
  }
  EXPECT_GE(checked, 12);
}

TEST(Zoo, TinyModelsBuildCountAndTrainOneStep) {
  int built = 0;
  for (const auto& path : zoo(true)) {
    SCOPED_TRACE(path.string());
    samba::ModelConfig cfg = samba::load_model_config(path.string());
    EXPECT_GE(cfg.d_model, 64);
    EXPECT_LE(cfg.d_model, 128);
    torch::manual_seed(0);
    samba::LanguageModel model(cfg);
    int64_t real = 0;
    for (const auto& p : model->parameters()) real += p.numel();
    EXPECT_EQ(real, samba::summarize(cfg).total_params) << cfg.name;

    auto tokens = torch::randint(cfg.vocab_size, {2, 33}, torch::kLong);
    auto loss = model->loss(tokens.slice(1, 0, 32), tokens.slice(1, 1, 33));
    ASSERT_TRUE(std::isfinite(loss.item<double>())) << cfg.name;
    // An untrained model predicts roughly uniformly.
    EXPECT_NEAR(loss.item<double>(), std::log(static_cast<double>(cfg.vocab_size)), 1.0) << cfg.name;
    loss.backward();
    for (const auto& p : model->named_parameters()) {
      ASSERT_TRUE(p.value().grad().defined()) << cfg.name << " " << p.key();
      EXPECT_TRUE(torch::isfinite(p.value().grad()).all().item<bool>()) << cfg.name << " " << p.key();
    }
    ++built;
  }
  EXPECT_GE(built, 10);
}

TEST(Zoo, CanonicalParameterNames) {
  samba::ModelConfig cfg = samba::load_model_config(std::string(SAMBA_SOURCE_DIR) + "/configs/models/tiny-llama2.yaml");
  samba::LanguageModel model(cfg);
  auto params = model->named_parameters();
  EXPECT_TRUE(params.contains("embed.weight"));
  EXPECT_TRUE(params.contains("layers.0.norm.weight"));
  EXPECT_TRUE(params.contains("layers.1.mixer.down.weight"));
  EXPECT_TRUE(params.contains("norm_f.weight"));
  EXPECT_TRUE(params.contains("lm_head.weight"));  // tiny-llama2 is untied
  samba::ModelConfig tied = samba::load_model_config(std::string(SAMBA_SOURCE_DIR) + "/configs/models/tiny-samba.yaml");
  samba::LanguageModel m2(tied);
  EXPECT_FALSE(m2->named_parameters().contains("lm_head.weight"));
}
