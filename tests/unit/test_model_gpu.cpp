// The whole model on CUDA: the fused path (RMSNorm + residual kernel, CUDA scan and conv,
// fused LM head) against the libtorch reference ops, loss and every parameter gradient.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "samba/kernels/common.h"
#include "samba/model/model.h"
#include "samba/runtime/device.h"
#include "test_util.h"

namespace {

struct LossAndGrads {
  torch::Tensor loss;
  std::vector<torch::Tensor> grads;
  std::string hidden_fn;
};

LossAndGrads run(samba::LanguageModel& model, const torch::Tensor& tokens, const torch::Tensor& targets,
                 bool reference, bool autocast) {
  samba::kernels::set_use_reference_kernels(reference);
  LossAndGrads out;
  {
    samba::runtime::AutocastScope scope(tokens.device(), autocast);
    auto h = model->hidden_states(tokens);
    out.hidden_fn = h.grad_fn() ? h.grad_fn()->name() : "";
    model->zero_grad();
    out.loss = model->loss(tokens, targets);
    out.loss.backward();
  }
  for (const auto& p : model->parameters()) out.grads.push_back(p.grad().detach().to(torch::kFloat64).cpu());
  samba::kernels::set_use_reference_kernels(false);
  return out;
}

TEST(ModelGpu, FusedNormResidualPathMatchesTheReferenceOps) {
  if (!torch::cuda::is_available() || !samba::kernels::built_with_cuda_kernels()) GTEST_SKIP() << "no CUDA kernels";
  auto cfg = samba::testing::tiny_config("M-*-", 64);
  torch::manual_seed(0);
  samba::LanguageModel model(cfg);
  model->to(torch::kCUDA);
  auto opt = torch::TensorOptions().dtype(torch::kLong).device(torch::kCUDA);
  auto tokens = torch::randint(0, cfg.vocab_size, {2, 32}, opt), targets = torch::randint(0, cfg.vocab_size, {2, 32}, opt);

  const auto fused = run(model, tokens, targets, false, false), ref = run(model, tokens, targets, true, false);
  EXPECT_NE(fused.hidden_fn.find("RmsNormResidual"), std::string::npos) << fused.hidden_fn;
  EXPECT_EQ(ref.hidden_fn.find("RmsNormResidual"), std::string::npos) << ref.hidden_fn;
  EXPECT_LT(std::abs(fused.loss.item<double>() - ref.loss.item<double>()), 1e-5 * ref.loss.item<double>());
  ASSERT_EQ(fused.grads.size(), ref.grads.size());
  for (size_t i = 0; i < ref.grads.size(); ++i) EXPECT_LT(samba::testing::rel_error(fused.grads[i], ref.grads[i]), 1e-3) << "parameter " << i;

  // bf16 autocast: the fused path's normalised outputs come out bf16; the loss stays within
  // bf16 noise of the fp32 reference.
  const auto bf = run(model, tokens, targets, false, true);
  EXPECT_NE(bf.hidden_fn.find("RmsNormResidual"), std::string::npos) << bf.hidden_fn;
  EXPECT_LT(std::abs(bf.loss.item<double>() - ref.loss.item<double>()), 2e-2 * ref.loss.item<double>());
}

}  // namespace
