// The op table (op_harness.h) on the CUDA backends, plus what only the GPU can check:
// bitwise determinism of the backward, realistic sizes, and the dispatch picking the kernels.
#include "op_harness.h"

namespace {
using namespace samba::testing::ops;
namespace K = samba::kernels;

bool have_cuda_kernels() { return torch::cuda::is_available() && K::built_with_cuda_kernels(); }

class OpsGpu : public ::testing::TestWithParam<Run> {};

TEST_P(OpsGpu, MatchesFp64Oracle) {
  if (!have_cuda_kernels()) GTEST_SKIP() << "no CUDA device or no CUDA kernels in this build";
  check_run(GetParam());
}

INSTANTIATE_TEST_SUITE_P(Table, OpsGpu, ::testing::ValuesIn(runs_on(torch::kCUDA)),
                         [](const ::testing::TestParamInfo<Run>& info) { return run_name(op_table(), info.param); });

Tensors scan_on_gpu(const Shape& s, torch::ScalarType dtype) {
  auto in = scan_inputs(s);
  const std::vector<bool> act = {true, true, false, true, true, false, true, false};
  for (size_t i = 0; i < in.size(); ++i)
    if (in[i].defined()) in[i] = in[i].to(torch::kCUDA, act[i] ? dtype : torch::kFloat32).requires_grad_();
  return in;
}

Tensors scan_grads(const Tensors& in, const torch::Tensor& w) {
  auto y = K::selective_scan_cuda(in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7], true);
  auto g = torch::autograd::grad({(std::get<0>(y).to(torch::kFloat32) * w).sum()}, in);
  g.push_back(std::get<0>(y));
  return g;
}

TEST(SelectiveScanGpu, BackwardIsBitwiseDeterministic) {
  if (!have_cuda_kernels()) GTEST_SKIP() << "no CUDA";
  torch::manual_seed(3);
  auto in = scan_on_gpu({2, 300, 16, 1000, 1, 1}, torch::kBFloat16);
  auto w = torch::randn({2, 300, 1000}, torch::kCUDA);
  auto a = scan_grads(in, w), b = scan_grads(in, w);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "tensor " << i;
}

// Mamba-sized channels and a long sequence against the fp64 reference on the GPU.
TEST(SelectiveScanGpu, LongSequenceMatchesReference) {
  if (!have_cuda_kernels()) GTEST_SKIP() << "no CUDA";
  torch::manual_seed(4);
  auto in = scan_on_gpu({2, 192, 16, 2048, 1, 1}, torch::kFloat32);
  auto w = torch::randn({2, 192, 2048}, torch::kCUDA);
  auto g = scan_grads(in, w);
  Tensors in64;
  for (auto& t : in) in64.push_back(t.defined() ? t.detach().to(torch::kFloat64).requires_grad_() : t);
  auto [y64, h64] = K::selective_scan_reference(in64[0], in64[1], in64[2], in64[3], in64[4], in64[5], in64[6],
                                                in64[7], true);
  auto g64 = torch::autograd::grad({(y64 * w.to(torch::kFloat64)).sum()}, in64);
  EXPECT_LT(rel_err(g.back(), y64), 1e-4);
  const char* names[] = {"u", "delta", "A", "B", "C", "D", "z", "delta_bias"};
  for (size_t i = 0; i < g64.size(); ++i) EXPECT_LT(rel_err(g[i], g64[i]), 1e-3) << names[i];
}

TEST(SelectiveScanGpu, DispatchPicksTheKernelAndStateMatches) {
  if (!have_cuda_kernels()) GTEST_SKIP() << "no CUDA";
  auto in = scan_on_gpu({2, 70, 16, 100, 1, 1}, torch::kBFloat16);
  auto [y, h] = K::selective_scan_with_state(in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7], true);
  ASSERT_TRUE(y.grad_fn());
  EXPECT_NE(y.grad_fn()->name().find("SelectiveScanCuda"), std::string::npos) << y.grad_fn()->name();
  Tensors in64;
  for (auto& t : in) in64.push_back(t.defined() ? t.detach().to(torch::kFloat64) : t);
  auto [y64, h64] = K::selective_scan_reference(in64[0], in64[1], in64[2], in64[3], in64[4], in64[5], in64[6],
                                                in64[7], true);
  EXPECT_LT(rel_err(h, h64), 1e-4);
}

TEST(CausalConv1dGpu, BackwardIsBitwiseDeterministicAndStateMatches) {
  if (!have_cuda_kernels()) GTEST_SKIP() << "no CUDA";
  torch::manual_seed(5);
  auto x = torch::randn({2, 1000, 777}, torch::kCUDA).to(torch::kBFloat16).requires_grad_();
  auto w = torch::randn({1000, 4}, torch::kCUDA).requires_grad_();
  auto b = torch::randn({1000}, torch::kCUDA).requires_grad_();
  auto gw = torch::randn({2, 1000, 777}, torch::kCUDA);
  auto grads = [&] {
    auto y = K::causal_conv1d(x, w, b, true);
    EXPECT_NE(y.grad_fn()->name().find("CausalConv1dCuda"), std::string::npos) << y.grad_fn()->name();
    return torch::autograd::grad({(y.to(torch::kFloat32) * gw).sum()}, {x, w, b});
  };
  auto g1 = grads(), g2 = grads();
  for (size_t i = 0; i < g1.size(); ++i) EXPECT_TRUE(torch::equal(g1[i], g2[i])) << "grad " << i;
  auto [y, state] = K::causal_conv1d_with_state(x.detach(), w.detach(), b.detach(), true, {});
  EXPECT_TRUE(torch::equal(state, x.detach().narrow(2, 774, 3)));
}

}  // namespace
