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

// The Mamba layer's layouts (channels contiguous; B and C slices of one x_proj output), which
// take the pipelined forward: channels not a multiple of the block, a length not a multiple of
// the tile, both element types; outputs, final state and every gradient against fp64.
TEST(SelectiveScanGpu, MambaLayoutsMatchReference) {
  if (!have_cuda_kernels()) GTEST_SKIP() << "no CUDA";
  const int64_t batch = 2, E = 200, N = 16, L = 1000, R = 8;
  for (auto dtype : {torch::kBFloat16, torch::kFloat32}) {
    torch::manual_seed(6);
    auto o64 = torch::TensorOptions().dtype(torch::kFloat64);
    auto u = torch::randn({batch, L, E}, o64), delta = torch::randn({batch, L, E}, o64) * 0.5 - 1.0,
         z = torch::randn({batch, L, E}, o64), x_dbl = torch::randn({batch, L, R + 2 * N}, o64);
    auto A = -torch::rand({E, N}, o64) * 2.0 - 0.1, D = torch::randn({E}, o64), bias = torch::randn({E}, o64) * 0.3;
    // Rounded to the activation type first, so the oracle sees the kernel's inputs.
    for (auto* t : {&u, &delta, &z, &x_dbl}) *t = t->to(dtype).to(torch::kFloat64);
    auto dev_act = [&](const torch::Tensor& t) { return t.to(torch::kCUDA, dtype); };
    auto xd = dev_act(x_dbl);
    Tensors in = {dev_act(u).transpose(1, 2),        dev_act(delta).transpose(1, 2),
                  A.to(torch::kCUDA, torch::kFloat32), xd.narrow(2, R, N).transpose(1, 2),
                  xd.narrow(2, R + N, N).transpose(1, 2), D.to(torch::kCUDA, torch::kFloat32),
                  dev_act(z).transpose(1, 2),        bias.to(torch::kCUDA, torch::kFloat32)};
    for (auto& t : in) t = t.detach().requires_grad_();
    ASSERT_EQ(in[0].stride(1), 1);
    ASSERT_EQ(in[3].stride(1), 1);
    Tensors in64 = {u.transpose(1, 2), delta.transpose(1, 2), A, x_dbl.narrow(2, R, N).transpose(1, 2),
                    x_dbl.narrow(2, R + N, N).transpose(1, 2), D, z.transpose(1, 2), bias};
    for (auto& t : in64) t = t.detach().requires_grad_();
    auto w = torch::randn({batch, E, L}, torch::kFloat64);
    auto [y, h] = K::selective_scan_with_state(in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7], true);
    auto g = torch::autograd::grad({(y.to(torch::kFloat64) * w.to(torch::kCUDA)).sum()}, in);
    auto [y64, h64] = K::selective_scan_reference(in64[0], in64[1], in64[2], in64[3], in64[4], in64[5], in64[6],
                                                  in64[7], true);
    auto g64 = torch::autograd::grad({(y64 * w).sum()}, in64);
    const bool bf = dtype == torch::kBFloat16;
    const std::string tag = bf ? "bf16 " : "fp32 ";
    EXPECT_LT(rel_err(y, y64), bf ? 1e-2 : 1e-4) << tag << "y";
    EXPECT_LT(rel_err(h, h64), bf ? 1e-3 : 1e-4) << tag << "last state";
    const char* names[] = {"u", "delta", "A", "B", "C", "D", "z", "delta_bias"};
    for (size_t i = 0; i < g64.size(); ++i) EXPECT_LT(rel_err(g[i], g64[i]), bf ? 2e-2 : 1e-3) << tag << names[i];
  }
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

// The Mamba layer's layout (channels contiguous: x, y and both gradients), which takes the
// vectorised kernels when the channels come in whole 4-vectors (C = 200) and the first ones
// otherwise (C = 202): a length that is a multiple of neither the chunk nor the load batch,
// widths 4 and 3, with and without an initial state, both element types, against fp64.
TEST(CausalConv1dGpu, ChannelContiguousLayoutsMatchReference) {
  if (!have_cuda_kernels()) GTEST_SKIP() << "no CUDA";
  const int64_t batch = 2, L = 301;
  for (auto dtype : {torch::kBFloat16, torch::kFloat32})
    for (int64_t C : {200, 202})
      for (int64_t width : {4, 3})
        for (bool with_state : {false, true}) {
          SCOPED_TRACE(::testing::Message() << "dtype " << dtype << " C " << C << " width " << width << " state " << with_state);
          torch::manual_seed(8);
          auto o64 = torch::TensorOptions().dtype(torch::kFloat64);
          auto x64 = torch::randn({batch, L, C}, o64).to(dtype).to(torch::kFloat64).transpose(1, 2);
          auto w64 = torch::randn({C, width}, o64) * 0.5, b64 = torch::randn({C}, o64);
          auto s64 = with_state ? torch::randn({batch, C, width - 1}, o64) : torch::Tensor();
          auto gy64 = torch::randn({batch, L, C}, o64).to(dtype).to(torch::kFloat64).transpose(1, 2);
          auto x = x64.to(torch::kCUDA, dtype).detach().requires_grad_();
          auto w = w64.to(torch::kCUDA, torch::kFloat32).requires_grad_(),
               b = b64.to(torch::kCUDA, torch::kFloat32).requires_grad_();
          auto st = with_state ? s64.to(torch::kCUDA, torch::kFloat32) : torch::Tensor();
          auto gy = gy64.to(torch::kCUDA, dtype);
          ASSERT_EQ(x.stride(1), 1);
          ASSERT_EQ(gy.stride(1), 1);
          auto y = K::causal_conv1d_cuda(x, w, b, true, st);
          EXPECT_EQ(y.stride(1), 1);
          auto g = torch::autograd::grad({y}, {x, w, b}, {gy});
          EXPECT_EQ(g[0].stride(1), 1);
          auto x64g = x64.clone().requires_grad_(), w64g = w64.clone().requires_grad_(),
               b64g = b64.clone().requires_grad_();
          auto y64 = K::causal_conv1d_reference(x64g, w64g, b64g, true, s64);
          auto g64 = torch::autograd::grad({y64}, {x64g, w64g, b64g}, {gy64});
          const double tol = dtype == torch::kFloat32 ? 1e-5 : 1e-2;
          EXPECT_LT(rel_err(y, y64), tol);
          const char* names[] = {"x", "weight", "bias"};
          for (int i = 0; i < 3; ++i) EXPECT_LT(rel_err(g[i], g64[i]), 3 * tol) << names[i];
        }
}

// The warp-per-row backward at the model's width (more rows than one wave of warps) and the
// block-per-row one: two runs give bitwise-equal gradients (fixed-order weight sums).
TEST(RmsNormGpu, BackwardIsBitwiseDeterministic) {
  if (!have_cuda_kernels()) GTEST_SKIP() << "no CUDA";
  for (int64_t d : {1536, 2500}) {
    torch::manual_seed(9);
    auto x = torch::randn({3, 1000, d}, torch::kCUDA).to(torch::kBFloat16).requires_grad_();
    auto res = (torch::randn({3, 1000, d}, torch::kCUDA) * 3).requires_grad_();
    auto w = (torch::rand({d}, torch::kCUDA) + 0.5).requires_grad_();
    auto gy = torch::randn({3, 1000, d}, torch::kCUDA), gr = torch::randn({3, 1000, d}, torch::kCUDA);
    auto grads = [&] {
      auto [y, r] = K::rms_norm_residual_cuda(x, res, w, 1e-5, torch::kBFloat16);
      return torch::autograd::grad({(y.to(torch::kFloat32) * gy).sum() + (r * gr).sum()}, {x, res, w});
    };
    auto g1 = grads(), g2 = grads();
    for (size_t i = 0; i < g1.size(); ++i) EXPECT_TRUE(torch::equal(g1[i], g2[i])) << "d " << d << " grad " << i;
  }
}

// The dispatch takes the kernels on CUDA and the reference under the switch.
TEST(RopeSwiGLUGpu, DispatchPicksTheKernelsAndHonoursTheReferenceSwitch) {
  if (!have_cuda_kernels()) GTEST_SKIP() << "no CUDA";
  auto t = rope_tables(40, 64);
  const auto cos = t[0].to(torch::kCUDA, torch::kFloat32), sin = t[1].to(torch::kCUDA, torch::kFloat32);
  auto q = torch::randn({2, 30, 4, 64}, torch::kCUDA).to(torch::kBFloat16).requires_grad_();
  auto k = torch::randn({2, 30, 2, 64}, torch::kCUDA).to(torch::kBFloat16).requires_grad_();
  auto gate = torch::randn({3, 1000}, torch::kCUDA).to(torch::kBFloat16).requires_grad_();
  auto up = torch::randn({3, 1000}, torch::kCUDA).to(torch::kBFloat16).requires_grad_();
  auto names = [&] {
    return std::vector<std::string>{K::rope(q, cos, sin, 3).grad_fn()->name(),
                                    K::rope_qk(q, k, cos, sin, 3).second.grad_fn()->name(),
                                    K::swiglu(gate, up).grad_fn()->name()};
  };
  const bool before = K::use_reference_kernels();
  K::set_use_reference_kernels(false);
  const auto fast = names();
  K::set_use_reference_kernels(true);
  const auto ref = names();
  K::set_use_reference_kernels(before);
  for (const auto& n : {fast[0], fast[1]}) EXPECT_NE(n.find("RopeCuda"), std::string::npos) << n;
  EXPECT_NE(fast[2].find("SwiGLUCuda"), std::string::npos) << fast[2];
  for (const auto& n : ref) EXPECT_EQ(n.find("Cuda"), std::string::npos) << n;
}

// q and k in one launch give exactly what two launches give, values and gradients.
TEST(RopeGpu, QkInOneLaunchEqualsOneAtATime) {
  if (!have_cuda_kernels()) GTEST_SKIP() << "no CUDA";
  torch::manual_seed(11);
  auto t = rope_tables(4096 + 100, 128);
  const auto cos = t[0].to(torch::kCUDA, torch::kFloat32), sin = t[1].to(torch::kCUDA, torch::kFloat32);
  auto q = torch::randn({2, 100, 12, 128}, torch::kCUDA).to(torch::kBFloat16).requires_grad_();
  auto k = torch::randn({2, 100, 4, 128}, torch::kCUDA).to(torch::kBFloat16).requires_grad_();
  auto wq = torch::randn({2, 100, 12, 128}, torch::kCUDA), wk = torch::randn({2, 100, 4, 128}, torch::kCUDA);
  auto [yq, yk] = K::rope_qk_cuda(q, k, cos, sin, 4096);
  auto g = torch::autograd::grad({(yq.to(torch::kFloat32) * wq).sum() + (yk.to(torch::kFloat32) * wk).sum()}, {q, k});
  auto yq1 = K::rope_cuda(q, cos, sin, 4096), yk1 = K::rope_cuda(k, cos, sin, 4096);
  auto g1 =
      torch::autograd::grad({(yq1.to(torch::kFloat32) * wq).sum() + (yk1.to(torch::kFloat32) * wk).sum()}, {q, k});
  EXPECT_TRUE(torch::equal(yq, yq1));
  EXPECT_TRUE(torch::equal(yk, yk1));
  EXPECT_TRUE(torch::equal(g[0], g1[0]));
  EXPECT_TRUE(torch::equal(g[1], g1[1]));
}

}  // namespace
