// The stack itself (with MLP sublayers only, so it does not depend on any mixer): pre-norm
// residual wiring, init statistics of the shared helpers, determinism.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "samba/core/error.h"
#include "samba/model/analysis.h"
#include "samba/model/init.h"
#include "samba/model/layer_config.h"
#include "samba/model/layers/mlp.h"
#include "samba/model/model.h"
#include "test_util.h"

using samba::testing::tiny_config;

TEST(Model, ResidualWiringMatchesManualComputation) {
  auto cfg = tiny_config("-2");
  torch::manual_seed(1);
  samba::LanguageModel model(cfg);
  model->to(torch::kFloat64);
  auto tokens = torch::randint(cfg.vocab_size, {2, 5}, torch::kLong);
  auto x = model->embed->weight.index({tokens});
  for (const auto& m : *model->layers) {
    auto r = m->as<samba::ResidualImpl>();
    auto h = x * torch::rsqrt(x.pow(2).mean(-1, true) + cfg.norm_eps) * r->norm->weight;
    auto mlp = std::dynamic_pointer_cast<samba::SwiGLUImpl>(r->mixer);
    ASSERT_TRUE(mlp);
    x = x + torch::matmul(torch::silu(torch::matmul(h, mlp->gate->weight.t())) * torch::matmul(h, mlp->up->weight.t()),
                          mlp->down->weight.t());
  }
  x = x * torch::rsqrt(x.pow(2).mean(-1, true) + cfg.norm_eps) * model->norm_f->weight;
  auto expected = torch::matmul(x, model->embed->weight.t());
  auto got = model->forward(tokens).to(torch::kFloat64);
  // forward returns fp32 logits, so compare at fp32 precision
  EXPECT_LT(samba::testing::rel_error(got, expected), 1e-6);
}

TEST(Model, MambaInitScalesResidualProjections) {
  auto cfg = tiny_config("--", 128);
  cfg.mlp_hidden = 512;
  torch::manual_seed(2);
  samba::LanguageModel model(cfg);
  auto mlp = std::dynamic_pointer_cast<samba::SwiGLUImpl>(model->layers[0]->as<samba::ResidualImpl>()->mixer);
  // kaiming_uniform(a=sqrt(5)) has std 1/sqrt(3 fan_in); the residual projection is divided
  // by sqrt(r * n_blocks) = sqrt(2).
  const double in_std = 1.0 / std::sqrt(3.0 * 128);
  const double out_std = 1.0 / std::sqrt(3.0 * 512) / std::sqrt(2.0);
  EXPECT_NEAR(mlp->gate->weight.std().item<double>(), in_std, 0.05 * in_std);
  EXPECT_NEAR(mlp->down->weight.std().item<double>(), out_std, 0.05 * out_std);
  EXPECT_NEAR(model->embed->weight.std().item<double>(), 0.02, 0.001);
}

TEST(Model, TinyLlamaInitStatistics) {
  auto cfg = tiny_config("-2-2", 128);
  cfg.mlp_hidden = 512;
  cfg.init = samba::InitScheme::TinyLlama;
  cfg.tie_embeddings = false;
  torch::manual_seed(3);
  samba::LanguageModel model(cfg);
  auto mlp = std::dynamic_pointer_cast<samba::SwiGLUImpl>(model->layers[0]->as<samba::ResidualImpl>()->mixer);
  const double std_in = std::sqrt(2.0 / (5.0 * 128));
  const double std_out = 1.0 / (std::sqrt(128.0) * 2);  // n_blocks = 2 MLP sublayers
  EXPECT_NEAR(mlp->up->weight.std().item<double>(), std_in, 0.03 * std_in);
  EXPECT_NEAR(mlp->down->weight.std().item<double>(), std_out, 0.03 * std_out);
  EXPECT_NEAR(model->embed->weight.std().item<double>(), std_in, 0.03 * std_in);
  EXPECT_NEAR(model->lm_head->weight.std().item<double>(), std_in, 0.03 * std_in);
}

TEST(Model, SameSeedSameModelAndOutput) {
  auto cfg = tiny_config("-2");
  auto tokens = torch::randint(cfg.vocab_size, {2, 7}, torch::kLong);
  torch::manual_seed(5);
  samba::LanguageModel a(cfg);
  torch::manual_seed(5);
  samba::LanguageModel b(cfg);
  EXPECT_TRUE(torch::equal(a->forward(tokens), b->forward(tokens)));
  torch::manual_seed(6);
  samba::LanguageModel c(cfg);
  EXPECT_FALSE(torch::equal(a->forward(tokens), c->forward(tokens)));
}

TEST(Model, StepDecodingEqualsForwardForStatelessLayers) {
  auto cfg = tiny_config("-2");
  samba::LanguageModel model(cfg);
  model->to(torch::kFloat64);
  auto tokens = torch::randint(cfg.vocab_size, {2, 6}, torch::kLong);
  auto full = model->forward(tokens);
  auto state = model->make_state(2);
  for (int64_t t = 0; t < 6; ++t) {
    auto logits = model->step(tokens.slice(1, t, t + 1), state);
    EXPECT_LT(samba::testing::rel_error(logits, full.slice(1, t, t + 1)), 1e-6);
  }
}

TEST(Model, UnknownLayerInRegistryIsAClearError) {
  EXPECT_THROW(samba::sublayer_spec('X'), samba::Error);
}

// Out-of-range model values are errors naming the key and the allowed range (issue 12), and
// size arithmetic never wraps.
namespace {

std::string config_error(const std::string& yaml) {
  try {
    samba::ModelConfig cfg = samba::parse_model_config(yaml, "bad.yaml");
    (void)samba::summarize(cfg);
  } catch (const samba::Error& e) {
    return e.what();
  }
  return "";
}

const char* kBase = "d_model: 64\nmlp_hidden: 128\nattention: {n_heads: 4, window: 16}\nseq_len: 32\n";

}  // namespace

TEST(ModelConfigRanges, HugeSeqLenIsAnErrorNamingTheKey) {
  const auto msg = config_error("d_model: 64\nmlp_hidden: 128\npattern: \"M-\"\nseq_len: 4611686018427387904\n");
  EXPECT_NE(msg.find("seq_len"), std::string::npos) << msg;
  EXPECT_NE(msg.find("between 1 and 1073741824"), std::string::npos) << msg;
}

TEST(ModelConfigRanges, NonFiniteRopeBaseIsRefused) {
  for (const char* v : {".inf", "inf", "1e400", "nan"}) {
    const auto msg = config_error(std::string("pattern: \"*-\"\nd_model: 64\nmlp_hidden: 128\nseq_len: 32\n") +
                                  "attention: {n_heads: 4, window: 16, rope_base: " + v + "}\n");
    EXPECT_NE(msg.find("rope_base"), std::string::npos) << v << ": " << msg;
  }
}

TEST(ModelConfigRanges, TinyKeyExpandNamesTheKeyAndTheRange) {
  auto msg = config_error(std::string(kBase) + "pattern: \"G-\"\ngla: {n_heads: 2, key_expand: 0.001}\n");
  EXPECT_NE(msg.find("gla.key_expand"), std::string::npos) << msg;
  EXPECT_NE(msg.find("allowed range is key_expand >= 0.03125"), std::string::npos) << msg;
  msg = config_error(std::string(kBase) + "pattern: \"R-\"\nretnet: {n_heads: 2, key_expand: 0.001}\n");
  EXPECT_NE(msg.find("retnet.key_expand"), std::string::npos) << msg;
  EXPECT_NE(msg.find("key_expand >= 0.0625"), std::string::npos) << msg;
  msg = config_error(std::string(kBase) + "pattern: \"G-\"\ngla: {n_heads: 2, value_expand: 0.01}\n");
  EXPECT_NE(msg.find("gla.value_expand"), std::string::npos) << msg;
}

TEST(ModelConfigRanges, ParameterCountsThatWouldWrapAreAnError) {
  // 10^6 Mamba layers of width 2^20, expand 4: ~1.3 * 10^19 > 2^63 parameters.
  const auto msg = config_error(
      "d_model: 1048576\npattern: \"MMMMMMMMMM\"\nrepeat: 100000\nseq_len: 32\nmamba: {expand: 4}\n");
  EXPECT_NE(msg.find("64-bit"), std::string::npos) << msg;
}

TEST(ModelConfigRanges, HugeMicroBatchDoesNotWrapTheMemoryEstimate) {
  auto cfg = tiny_config("--", 32);
  auto s = samba::summarize(cfg, int64_t{1} << 50);
  EXPECT_GT(s.memory.activations, 0.0);
  EXPECT_TRUE(std::isfinite(s.memory.total()));
}

// "A layer is one file": every kind the config side registers has a module, and the module
// registry's names are the kinds' (not a second table that could drift).
TEST(LayerKinds, EveryKindHasAModuleWithItsName) {
  ASSERT_EQ(samba::layer_kinds().size(), samba::valid_layer_chars().size());
  for (const auto& kind : samba::layer_kinds()) {
    const auto& spec = samba::sublayer_spec(kind.symbol);
    EXPECT_EQ(spec.symbol, kind.symbol);
    EXPECT_STREQ(spec.name, kind.name);
    EXPECT_STREQ(samba::layer_name(kind.symbol), kind.name);
  }
  // Each option section is read, written and re-read by its own layer file.
  for (const auto* section : samba::option_sections()) {
    ASSERT_TRUE(section->read) << section->key;
    ASSERT_TRUE(section->write) << section->key;
  }
  auto cfg = tiny_config("M-*-G-R-S-", 64);
  const std::string yaml = samba::to_yaml(cfg);
  EXPECT_EQ(samba::to_yaml(samba::parse_model_config(yaml, "round-trip.yaml")), yaml);
}
