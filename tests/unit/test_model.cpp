// The stack itself (with MLP sublayers only, so it does not depend on any mixer): pre-norm
// residual wiring, init statistics of the shared helpers, determinism.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "samba/core/error.h"
#include "samba/model/init.h"
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
