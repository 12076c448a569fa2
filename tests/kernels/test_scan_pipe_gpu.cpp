// The pipelined selective-scan backward (the Mamba layer's layouts, N = 16): every optional
// input present or absent against the fp64 reference, bitwise determinism, and agreement
// with the first backward version.
#include "op_harness.h"

namespace {
using namespace samba::testing::ops;
namespace K = samba::kernels;

bool have_cuda_kernels() { return torch::cuda::is_available() && K::built_with_cuda_kernels(); }

struct MambaScan {
  Tensors gpu, cpu64;  // u, delta, A, B, C, D, z, bias (D, z, bias may be undefined)
  torch::Tensor w;     // the loss weights, (batch, E, L) fp64 on the CPU
};

// Channels-contiguous u, delta, z and B, C as slices of one x_proj-like output, as the
// Mamba layer passes them.
MambaScan mamba_scan(int64_t batch, int64_t E, int64_t L, torch::ScalarType dtype, bool with_z, bool with_d,
                     bool with_bias, uint64_t seed, int64_t N = 16) {
  const int64_t R = 8;
  torch::manual_seed(seed);
  auto o64 = torch::TensorOptions().dtype(torch::kFloat64);
  auto u = torch::randn({batch, L, E}, o64), delta = torch::randn({batch, L, E}, o64) * 0.5 - 1.0,
       z = torch::randn({batch, L, E}, o64), x_dbl = torch::randn({batch, L, R + 2 * N}, o64);
  auto A = -torch::rand({E, N}, o64) * 2.0 - 0.1, D = torch::randn({E}, o64), bias = torch::randn({E}, o64) * 0.3;
  for (auto* t : {&u, &delta, &z, &x_dbl}) *t = t->to(dtype).to(torch::kFloat64);
  auto dev = [&](const torch::Tensor& t) { return t.to(torch::kCUDA, dtype); };
  auto xd = dev(x_dbl);
  MambaScan m;
  m.gpu = {dev(u).transpose(1, 2),
           dev(delta).transpose(1, 2),
           A.to(torch::kCUDA, torch::kFloat32),
           xd.narrow(2, R, N).transpose(1, 2),
           xd.narrow(2, R + N, N).transpose(1, 2),
           with_d ? D.to(torch::kCUDA, torch::kFloat32) : torch::Tensor(),
           with_z ? dev(z).transpose(1, 2) : torch::Tensor(),
           with_bias ? bias.to(torch::kCUDA, torch::kFloat32) : torch::Tensor()};
  m.cpu64 = {u.transpose(1, 2),
             delta.transpose(1, 2),
             A,
             x_dbl.narrow(2, R, N).transpose(1, 2),
             x_dbl.narrow(2, R + N, N).transpose(1, 2),
             with_d ? D : torch::Tensor(),
             with_z ? z.transpose(1, 2) : torch::Tensor(),
             with_bias ? bias : torch::Tensor()};
  for (auto* v : {&m.gpu, &m.cpu64})
    for (auto& t : *v)
      if (t.defined()) t = t.detach().requires_grad_();
  m.w = torch::randn({batch, E, L}, o64);
  return m;
}

Tensors defined(const Tensors& in) {
  Tensors out;
  for (const auto& t : in)
    if (t.defined()) out.push_back(t);
  return out;
}

// Output then every gradient; the loss weights come in the channels-last layout of a
// matmul's input gradient (the layout the layer's out_proj hands back).
Tensors run_gpu(const MambaScan& m) {
  auto y = K::selective_scan_cuda(m.gpu[0], m.gpu[1], m.gpu[2], m.gpu[3], m.gpu[4], m.gpu[5], m.gpu[6], m.gpu[7],
                                  /*delta_softplus=*/true);
  auto w = m.w.transpose(1, 2).contiguous().to(torch::kCUDA).transpose(1, 2);
  auto g = torch::autograd::grad({(std::get<0>(y).to(torch::kFloat64) * w).sum()}, defined(m.gpu));
  g.insert(g.begin(), std::get<0>(y));
  return g;
}

TEST(SelectiveScanPipeGpu, EveryOptionalInputMatchesReference) {
  if (!have_cuda_kernels()) GTEST_SKIP() << "no CUDA";
  struct Opt {
    bool z, d, bias;
  };
  for (const Opt o : {Opt{true, true, true}, Opt{false, true, true}, Opt{true, false, false}, Opt{false, false, false}}) {
    for (auto dtype : {torch::kBFloat16, torch::kFloat32}) {
      // 72 channels: two full blocks and a partial one; 333 steps: a partial last chunk.
      auto m = mamba_scan(2, 72, 333, dtype, o.z, o.d, o.bias, 11);
      auto g = run_gpu(m);
      auto [y64, h64] = K::selective_scan_reference(m.cpu64[0], m.cpu64[1], m.cpu64[2], m.cpu64[3], m.cpu64[4],
                                                    m.cpu64[5], m.cpu64[6], m.cpu64[7], true);
      auto g64 = torch::autograd::grad({(y64 * m.w).sum()}, defined(m.cpu64));
      const bool bf = dtype == torch::kBFloat16;
      const std::string tag = std::string(bf ? "bf16" : "fp32") + (o.z ? " z" : "") + (o.d ? " D" : "") +
                              (o.bias ? " bias" : "") + ": ";
      EXPECT_LT(rel_err(g[0], y64), bf ? 1e-2 : 1e-4) << tag << "y";
      ASSERT_EQ(g.size(), g64.size() + 1);
      for (size_t i = 0; i < g64.size(); ++i)
        EXPECT_LT(rel_err(g[i + 1], g64[i]), bf ? 2e-2 : 1e-3) << tag << "gradient " << i;
    }
  }
}

// The pipelined forward's other state sizes (its layout is a compile-time constant per size);
// their backward is the first version's.
TEST(SelectiveScanPipeGpu, OtherStateSizesMatchReference) {
  if (!have_cuda_kernels()) GTEST_SKIP() << "no CUDA";
  for (int64_t N : {8, 32, 64}) {
    auto m = mamba_scan(2, 48, 129, torch::kFloat32, true, true, true, 14, N);
    auto g = run_gpu(m);
    auto [y64, h64] = K::selective_scan_reference(m.cpu64[0], m.cpu64[1], m.cpu64[2], m.cpu64[3], m.cpu64[4],
                                                  m.cpu64[5], m.cpu64[6], m.cpu64[7], true);
    auto g64 = torch::autograd::grad({(y64 * m.w).sum()}, defined(m.cpu64));
    EXPECT_LT(rel_err(g[0], y64), 1e-4) << "N " << N << ": y";
    for (size_t i = 0; i < g64.size(); ++i) EXPECT_LT(rel_err(g[i + 1], g64[i]), 1e-3) << "N " << N << ": gradient " << i;
  }
}

TEST(SelectiveScanPipeGpu, BackwardIsBitwiseDeterministic) {
  if (!have_cuda_kernels()) GTEST_SKIP() << "no CUDA";
  auto m = mamba_scan(3, 200, 1000, torch::kBFloat16, true, true, true, 12);
  auto a = run_gpu(m), b = run_gpu(m);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "tensor " << i;
}

// The pipelined backward against the first version (which takes time-contiguous copies of
// the same inputs): the same gradients up to the order of the dB / dC sums. A forward under
// no_grad saves no chunk states and gives the same output.
TEST(SelectiveScanPipeGpu, PipelinedBackwardMatchesFirstVersion) {
  if (!have_cuda_kernels()) GTEST_SKIP() << "no CUDA";
  auto m = mamba_scan(2, 64, 500, torch::kFloat32, true, true, true, 13);
  auto g = run_gpu(m);
  MambaScan t = m;
  for (size_t i : {0, 1, 3, 4, 6}) t.gpu[i] = m.gpu[i].detach().contiguous().requires_grad_();
  for (size_t i : {2, 5, 7}) t.gpu[i] = m.gpu[i].detach().clone().requires_grad_();
  auto r = run_gpu(t);
  for (size_t i = 0; i < g.size(); ++i) EXPECT_LT(rel_err(g[i], r[i]), 1e-5) << "tensor " << i;
  {
    torch::NoGradGuard no_grad;
    auto y = K::selective_scan_cuda(m.gpu[0], m.gpu[1], m.gpu[2], m.gpu[3], m.gpu[4], m.gpu[5], m.gpu[6], m.gpu[7],
                                    true);
    EXPECT_FALSE(std::get<0>(y).requires_grad());
    EXPECT_LT(rel_err(std::get<0>(y), g[0]), 1e-6);
  }
}

}  // namespace
