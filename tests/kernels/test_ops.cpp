// The op table (op_harness.h) on the CPU backends.
#include "op_harness.h"

namespace {
using namespace samba::testing::ops;

class OpsCpu : public ::testing::TestWithParam<Run> {};

TEST_P(OpsCpu, MatchesFp64Oracle) { check_run(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Table, OpsCpu, ::testing::ValuesIn(runs_on(torch::kCPU)),
                         [](const ::testing::TestParamInfo<Run>& info) { return run_name(op_table(), info.param); });

// The harness itself must catch a kernel that leaves an output element unwritten.
TEST(OpsHarness, PoisonMarksUnwrittenOutputs) {
  samba::kernels::set_poison_outputs(true);
  auto t = samba::kernels::new_output({4}, torch::kFloat32);
  samba::kernels::set_poison_outputs(false);
  EXPECT_TRUE(t.isnan().all().item<bool>());
  auto ref = torch::zeros({4});
  EXPECT_FALSE(rel_err(t, ref) < 1.0);
}

TEST(OpsHarness, ReferenceSwitchOverridesDispatch) {
  auto in = scan_inputs({1, 3, 2, 5, 1, 1});
  for (auto& t : in)
    if (t.defined()) t = t.to(torch::kFloat32).requires_grad_();
  auto run = [&] { return samba::kernels::selective_scan(in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7], true); };
  const bool before = samba::kernels::use_reference_kernels();
  samba::kernels::set_use_reference_kernels(false);
  auto fast = run();
  samba::kernels::set_use_reference_kernels(true);
  auto ref = run();
  samba::kernels::set_use_reference_kernels(before);
  ASSERT_TRUE(fast.grad_fn() && ref.grad_fn());
  EXPECT_NE(fast.grad_fn()->name().find("SelectiveScan"), std::string::npos) << fast.grad_fn()->name();
  EXPECT_EQ(ref.grad_fn()->name().find("SelectiveScan"), std::string::npos) << ref.grad_fn()->name();
  EXPECT_LT(rel_err(fast, ref), 1e-5);
}

}  // namespace

#include "samba/model/model.h"
#include "test_util.h"

namespace {

// LanguageModel::loss goes through the fused LM head + loss; it must equal cross-entropy of
// forward()'s logits, value and gradients (ignored targets included).
TEST(LinearCrossEntropy, ModelLossEqualsCrossEntropyOfLogits) {
  torch::manual_seed(9);
  auto cfg = samba::testing::tiny_config("M-");
  samba::LanguageModel model(cfg);
  auto tokens = torch::randint(cfg.vocab_size, {2, 17}, torch::kLong);
  auto targets = torch::randint(cfg.vocab_size, {2, 17}, torch::kLong);
  targets[0][3] = -1;
  auto params = model->parameters();
  auto fused = model->loss(tokens, targets);
  auto g_fused = torch::autograd::grad({fused}, params, {}, false, false, true);
  auto logits = model->forward(tokens);
  auto ref = torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}),
                                                  torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-1));
  auto g_ref = torch::autograd::grad({ref}, params, {}, false, false, true);
  EXPECT_NEAR(fused.item<double>(), ref.item<double>(), 1e-5);
  for (size_t i = 0; i < params.size(); ++i) {
    ASSERT_EQ(g_fused[i].defined(), g_ref[i].defined()) << "param " << i;
    if (g_ref[i].defined()) EXPECT_LT(rel_err(g_fused[i], g_ref[i]), 1e-4) << "param " << i;
  }
}

// Without gradients (evaluation) the LM-head loss skips its gradient matmuls; the loss is the
// same number as in training, ignored targets and a partial last chunk included.
TEST(LinearCrossEntropy, LossWithoutGradientsEqualsTheTrainingLoss) {
  torch::manual_seed(10);
  auto h = torch::randn({3, 5, 16}).requires_grad_();
  auto w = (torch::randn({37, 16}) * 0.3).requires_grad_();
  auto t = torch::randint(37, {3, 5}, torch::kLong);
  t[1][2] = -1;
  const auto trained = samba::kernels::linear_cross_entropy(h, w, t, -1, /*chunk=*/4);
  torch::Tensor no_grad, detached;
  {
    torch::NoGradGuard guard;
    no_grad = samba::kernels::linear_cross_entropy(h, w, t, -1, 4);
  }
  detached = samba::kernels::linear_cross_entropy(h.detach(), w.detach(), t, -1, 4);
  EXPECT_TRUE(trained.requires_grad());
  EXPECT_FALSE(no_grad.requires_grad());
  EXPECT_TRUE(torch::equal(trained.detach(), no_grad)) << trained.item<double>() << " vs " << no_grad.item<double>();
  EXPECT_TRUE(torch::equal(trained.detach(), detached));
  EXPECT_NEAR(trained.item<double>(), samba::kernels::linear_cross_entropy_reference(h, w, t, -1).item<double>(), 1e-5);
}

}  // namespace

#include "samba/model/layers/mlp.h"
#include "samba/model/layers/rope.h"

namespace {

// The model's RoPE goes through kernels::rope / rope_qk: same values as the definition.
TEST(RopeWiring, ApplyAndApplyQkMatchTheReference) {
  torch::manual_seed(12);
  samba::RotaryEmbedding rope(10, 500.0);
  auto q = torch::randn({2, 7, 3, 10}), k = torch::randn({2, 7, 1, 10});
  auto [cos, sin] = rope.cos_sin(20, torch::kCPU, torch::kFloat64);
  auto [yq, yk] = rope.apply_qk(q, k, 13);
  EXPECT_LT(rel_err(yq, samba::kernels::rope_reference(q.to(torch::kFloat64), cos, sin, 13)), 1e-6);
  EXPECT_LT(rel_err(yk, samba::kernels::rope_reference(k.to(torch::kFloat64), cos, sin, 13)), 1e-6);
  EXPECT_TRUE(torch::equal(rope.apply(q, 13), yq));
  EXPECT_EQ(yq.scalar_type(), torch::kFloat32);
}

TEST(SwiGLUWiring, LayerIsDownOfSiluGateTimesUp) {
  torch::manual_seed(13);
  samba::SwiGLU mlp(12, 37);
  auto x = torch::randn({2, 5, 12});
  auto want = mlp->down(torch::silu(mlp->gate(x)) * mlp->up(x));
  EXPECT_LT(rel_err(mlp->forward(x), want), 1e-6);
}

}  // namespace
