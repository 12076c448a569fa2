// FlashAttention-2 (sliding window and full causal) against the fp64 reference, forward and
// backward, in bf16 on the GPU. Skipped without a GPU or without the FA2 entry points.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <iostream>

#include "samba/kernels/attention.h"
#include "samba/model/layers/attention.h"
#include "test_util.h"

namespace samba {
namespace {

using samba::testing::rel_error;

void skip_without_flash(bool& skip) {
  skip = true;
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
#if !defined(SAMBA_WITH_CUDA) || TORCH_VERSION_MAJOR < 2
  GTEST_SKIP() << "built without CUDA or against libtorch < 2 (no FlashAttention-2 entry points)";
#endif
  skip = false;
}

struct Grads {
  torch::Tensor out, dq, dk, dv;
};

Grads run(const torch::Tensor& q0, const torch::Tensor& k0, const torch::Tensor& v0, const torch::Tensor& grad_out,
          int64_t window, double scale, bool reference) {
  auto q = q0.detach().requires_grad_(true), k = k0.detach().requires_grad_(true), v = v0.detach().requires_grad_(true);
  auto out = reference ? causal_attention_reference(q, k, v, window, scale) : causal_attention(q, k, v, window, scale);
  out.backward(grad_out.to(out.scalar_type()));
  return {out.detach(), q.grad(), k.grad(), v.grad()};
}

TEST(FlashAttentionGpu, MatchesReferenceForwardAndBackward) {
  bool skip = false;
  skip_without_flash(skip);
  if (skip) return;
  torch::manual_seed(0);
  const auto cuda = torch::TensorOptions().device(torch::kCUDA);
  const int64_t B = 2, T = 1024, H = 8, Hk = 2, D = 64;
  const double scale = 1.0 / 8.0;
  auto q = torch::randn({B, T, H, D}, cuda.dtype(torch::kBFloat16));
  auto k = torch::randn({B, T, Hk, D}, cuda.dtype(torch::kBFloat16));
  auto v = torch::randn({B, T, Hk, D}, cuda.dtype(torch::kBFloat16));
  auto grad_out = torch::randn({B, T, H, D}, cuda.dtype(torch::kFloat64));
  ASSERT_TRUE(flash_attention_applicable(q, k, v));
  for (int64_t window : {1, 256, 0}) {
    auto flash = run(q, k, v, grad_out, window, scale, false);
    auto ref = run(q.to(torch::kFloat64), k.to(torch::kFloat64), v.to(torch::kFloat64), grad_out, window, scale, true);
    EXPECT_EQ(flash.out.scalar_type(), torch::kBFloat16);
    std::cout << "window " << window << ": rel err out " << rel_error(flash.out, ref.out) << " dv "
              << rel_error(flash.dv, ref.dv) << "\n";
    EXPECT_LT(rel_error(flash.out, ref.out), 2e-2) << "out, window " << window;
    if (window == 1) {
      // One visible key: the softmax is constantly 1, so q and k get exactly zero gradient.
      EXPECT_LT(flash.dq.abs().max().item<double>(), 1e-2);
      EXPECT_LT(flash.dk.abs().max().item<double>(), 1e-2);
    } else {
      EXPECT_LT(rel_error(flash.dq, ref.dq), 3e-2) << "dq, window " << window;
      EXPECT_LT(rel_error(flash.dk, ref.dk), 3e-2) << "dk, window " << window;
    }
    EXPECT_LT(rel_error(flash.dv, ref.dv), 3e-2) << "dv, window " << window;
  }
}

TEST(FlashAttentionGpu, WindowIsRespected) {
  bool skip = false;
  skip_without_flash(skip);
  if (skip) return;
  torch::manual_seed(1);
  const auto opts = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kBFloat16);
  const int64_t T = 256, W = 32;
  auto q = torch::randn({1, T, 4, 64}, opts), k = torch::randn({1, T, 4, 64}, opts), v = torch::randn({1, T, 4, 64}, opts);
  auto base = causal_attention(q, k, v, W, 0.125);
  const int64_t j = 100;
  auto v2 = v.clone();
  v2.select(1, j).add_(4.0);
  auto changed = (causal_attention(q, k, v2, W, 0.125) - base).abs().amax({0, 2, 3}).gt(0).cpu();
  for (int64_t i = 0; i < T; ++i) EXPECT_EQ(changed[i].item<bool>(), i >= j && i < j + W) << "query " << i;
}

TEST(FlashAttentionGpu, LayerForwardBackwardInBf16) {
  bool skip = false;
  skip_without_flash(skip);
  if (skip) return;
  torch::manual_seed(2);
  auto cfg = samba::testing::tiny_config("*-", 256);
  cfg.attention.window = 16;
  auto layer = std::dynamic_pointer_cast<AttentionImpl>(make_sublayer('*', cfg, 0));
  layer->to(torch::kCUDA, torch::kFloat64);
  auto x = torch::randn({2, 64, 256}, torch::TensorOptions().device(torch::kCUDA).dtype(torch::kFloat64));
  auto want = layer->forward(x);
  layer->to(torch::kBFloat16);
  auto xb = x.to(torch::kBFloat16).requires_grad_(true);
  auto got = layer->forward(xb);
  EXPECT_LT(rel_error(got, want), 5e-2);
  got.to(torch::kFloat32).pow(2).sum().backward();
  for (const auto& p : layer->named_parameters())
    EXPECT_TRUE(p.value().grad().defined() && torch::isfinite(p.value().grad()).all().item<bool>()) << p.key();
}

}  // namespace
}  // namespace samba
