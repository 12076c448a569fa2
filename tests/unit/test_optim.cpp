// AdamW against libtorch's own AdamW, the warmup + cosine schedule, and clipping against
// torch::nn::utils::clip_grad_norm_.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "samba/core/error.h"
#include "samba/optim/adamw.h"

TEST(AdamW, MatchesLibtorchAdamW) {
  torch::manual_seed(0);
  auto w = torch::randn({7, 5}, torch::kFloat64);
  auto mine = w.clone().set_requires_grad(true);
  auto ref = w.clone().set_requires_grad(true);
  samba::OptimizerConfig cfg;
  cfg.beta1 = 0.9;
  cfg.beta2 = 0.95;
  cfg.eps = 1e-8;
  cfg.weight_decay = 0.1;
  samba::AdamW opt({{"w", mine}}, cfg);
  const double lr = 1e-2;
  torch::optim::AdamW torch_opt({ref}, torch::optim::AdamWOptions(lr).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1));
  for (int i = 0; i < 6; ++i) {
    auto g = torch::randn({7, 5}, torch::kFloat64);
    mine.mutable_grad() = g.clone();
    ref.mutable_grad() = g.clone();
    opt.step(lr);
    torch_opt.step();
  }
  EXPECT_TRUE(torch::allclose(mine, ref, 1e-12, 1e-12)) << (mine - ref).abs().max();
  EXPECT_EQ(opt.steps_taken(), 6);
}

TEST(AdamW, StateRoundTripContinuesIdentically) {
  samba::OptimizerConfig cfg;
  auto a = torch::randn({4, 3}).set_requires_grad(true);
  samba::AdamW opt({{"a", a}}, cfg);
  a.mutable_grad() = torch::randn({4, 3});
  opt.step(1e-2);
  auto b = a.detach().clone().set_requires_grad(true);
  samba::AdamW opt2({{"a", b}}, cfg);
  opt2.load_state(opt.state(), "test");
  auto g = torch::randn({4, 3});
  a.mutable_grad() = g.clone();
  b.mutable_grad() = g.clone();
  opt.step(1e-2);
  opt2.step(1e-2);
  EXPECT_TRUE(torch::equal(a, b));
}

TEST(AdamW, LoadStateForAnotherModelIsAnError) {
  samba::OptimizerConfig cfg;
  auto a = torch::randn({4, 3}).set_requires_grad(true);
  samba::AdamW opt({{"a", a}}, cfg);
  auto c = torch::randn({5, 3}).set_requires_grad(true);
  samba::AdamW other({{"a", c}}, cfg);
  EXPECT_THROW(other.load_state(opt.state(), "ckpt"), samba::Error);
  samba::AdamW renamed({{"b", a}}, cfg);
  EXPECT_THROW(renamed.load_state(opt.state(), "ckpt"), samba::Error);
}

TEST(Schedule, WarmupThenCosineToMinimum) {
  samba::OptimizerConfig cfg;
  cfg.lr = 1e-3;
  cfg.min_lr = 1e-4;
  cfg.warmup_fraction = 0.1;
  const int64_t total = 100;
  EXPECT_NEAR(samba::learning_rate(cfg, 0, total), 1e-4, 1e-12);  // 1/10 of peak
  EXPECT_NEAR(samba::learning_rate(cfg, 9, total), 1e-3, 1e-12);  // peak at the end of warmup
  EXPECT_NEAR(samba::learning_rate(cfg, 10, total), 1e-3, 1e-12);
  EXPECT_NEAR(samba::learning_rate(cfg, 55, total), 5.5e-4, 1e-9);  // halfway down the cosine
  EXPECT_NEAR(samba::learning_rate(cfg, 100, total), 1e-4, 1e-12);
  for (int64_t s = 10; s < total; ++s)
    EXPECT_LE(samba::learning_rate(cfg, s + 1, total), samba::learning_rate(cfg, s, total) + 1e-15);
}

TEST(Clip, MatchesLibtorchClipGradNorm) {
  auto a = torch::randn({10}).set_requires_grad(true);
  auto b = torch::randn({3, 3}).set_requires_grad(true);
  auto a2 = a.detach().clone().set_requires_grad(true);
  auto b2 = b.detach().clone().set_requires_grad(true);
  auto ga = torch::randn({10}) * 3, gb = torch::randn({3, 3}) * 3;
  a.mutable_grad() = ga.clone();
  b.mutable_grad() = gb.clone();
  a2.mutable_grad() = ga.clone();
  b2.mutable_grad() = gb.clone();
  const double mine = samba::clip_grad_norm({a, b}, 1.0);
  const double ref = torch::nn::utils::clip_grad_norm_(std::vector<torch::Tensor>{a2, b2}, 1.0);
  EXPECT_NEAR(mine, ref, 1e-4 * ref);
  EXPECT_TRUE(torch::allclose(a.grad(), a2.grad(), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(b.grad(), b2.grad(), 1e-5, 1e-6));
  auto c = torch::randn({4}).set_requires_grad(true);
  c.mutable_grad() = torch::tensor({1.0f, std::nanf(""), 0.0f, 0.0f});
  EXPECT_FALSE(std::isfinite(samba::clip_grad_norm({c}, 1.0)));
}
