// Selective scan and causal conv1d: reference vs a naive loop written here, the fast CPU
// kernel vs the reference (forward and every input gradient), decoding updates vs the scan.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>

#include "samba/core/error.h"
#include "samba/kernels/causal_conv1d.h"
#include "samba/kernels/selective_scan.h"
#include "test_util.h"

namespace {

using samba::testing::rel_error;
namespace K = samba::kernels;

struct ScanInputs {
  torch::Tensor u, delta, A, B, C, D, z, bias;
  std::vector<torch::Tensor> all() const { return {u, delta, A, B, C, D, z, bias}; }
};

// Realistic magnitudes: delta around softplus range, A negative (S4D-real), so the state
// neither explodes nor vanishes.
ScanInputs make_inputs(int64_t batch, int64_t E, int64_t N, int64_t L, torch::ScalarType dtype, bool optional,
                       uint64_t seed = 0) {
  torch::manual_seed(seed);
  auto o = torch::TensorOptions().dtype(dtype);
  ScanInputs in;
  in.u = torch::randn({batch, E, L}, o);
  in.delta = torch::randn({batch, E, L}, o) * 0.5 - 1.0;
  in.A = -torch::rand({E, N}, o) * 2.0 - 0.1;
  in.B = torch::randn({batch, N, L}, o);
  in.C = torch::randn({batch, N, L}, o);
  if (optional) {
    in.D = torch::randn({E}, o);
    in.z = torch::randn({batch, E, L}, o);
    in.bias = torch::randn({E}, o) * 0.3;
  }
  for (auto* t : {&in.u, &in.delta, &in.A, &in.B, &in.C, &in.D, &in.z, &in.bias})
    if (t->defined()) t->requires_grad_(true);
  return in;
}

// The recurrence element by element, in fp64, independent of both implementations.
torch::Tensor naive_scan(const ScanInputs& in, bool softplus) {
  auto u = in.u.detach().to(torch::kFloat64), delta = in.delta.detach().to(torch::kFloat64);
  auto A = in.A.detach().to(torch::kFloat64), B = in.B.detach().to(torch::kFloat64),
       C = in.C.detach().to(torch::kFloat64);
  const int64_t batch = u.size(0), E = u.size(1), L = u.size(2), N = A.size(1);
  auto out = torch::zeros({batch, E, L}, torch::kFloat64);
  auto ua = u.accessor<double, 3>(), da = delta.accessor<double, 3>(), Ba = B.accessor<double, 3>(),
       Ca = C.accessor<double, 3>(), oa = out.accessor<double, 3>();
  auto Aa = A.accessor<double, 2>();
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t e = 0; e < E; ++e) {
      std::vector<double> h(N, 0.0);
      for (int64_t t = 0; t < L; ++t) {
        double dt = da[b][e][t] + (in.bias.defined() ? in.bias[e].item<double>() : 0.0);
        if (softplus) dt = std::log1p(std::exp(dt));
        double y = 0;
        for (int64_t n = 0; n < N; ++n) {
          h[n] = std::exp(dt * Aa[e][n]) * h[n] + dt * Ba[b][n][t] * ua[b][e][t];
          y += Ca[b][n][t] * h[n];
        }
        if (in.D.defined()) y += in.D[e].item<double>() * ua[b][e][t];
        if (in.z.defined()) {
          double zv = in.z[b][e][t].item<double>();
          y *= zv / (1.0 + std::exp(-zv));
        }
        oa[b][e][t] = y;
      }
    }
  return out;
}

TEST(SelectiveScanReference, MatchesNaiveRecurrenceFp64) {
  for (bool optional : {false, true})
    for (bool softplus : {false, true}) {
      auto in = make_inputs(2, 5, 4, 11, torch::kFloat64, optional);
      auto [y, last] = K::selective_scan_reference(in.u, in.delta, in.A, in.B, in.C, in.D, in.z, in.bias, softplus);
      EXPECT_LT(rel_error(y, naive_scan(in, softplus)), 1e-6) << "optional " << optional << " softplus " << softplus;
      EXPECT_EQ(y.scalar_type(), torch::kFloat64);
      EXPECT_EQ(last.sizes(), (std::vector<int64_t>{2, 5, 4}));
    }
}

// Forward, final state and the gradient of every input.
void expect_fast_matches_reference(torch::ScalarType dtype, bool optional, bool softplus, double tol) {
  auto in = make_inputs(3, 7, 5, 19, dtype, optional, 7);
  auto [y_ref, h_ref] = K::selective_scan_reference(in.u, in.delta, in.A, in.B, in.C, in.D, in.z, in.bias, softplus);
  auto [y, h] = K::selective_scan_cpu(in.u, in.delta, in.A, in.B, in.C, in.D, in.z, in.bias, softplus);
  const std::string what = std::string(c10::toString(dtype)) + (optional ? " with z/D/bias" : " bare") +
                           (softplus ? " softplus" : "");
  EXPECT_EQ(y.scalar_type(), dtype);
  EXPECT_LT(rel_error(y, y_ref), tol) << what;
  EXPECT_LT(rel_error(h, h_ref), tol) << what;
  auto w = torch::randn_like(y_ref);
  auto inputs = in.all();
  std::vector<torch::Tensor> used;
  for (auto& t : inputs)
    if (t.defined()) used.push_back(t);
  auto g_ref = torch::autograd::grad({(y_ref * w).sum()}, used);
  auto g = torch::autograd::grad({(y * w).sum()}, used);
  const char* names[] = {"u", "delta", "A", "B", "C", "D", "z", "delta_bias"};
  for (size_t i = 0, k = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) continue;
    ASSERT_TRUE(g[k].defined()) << names[i] << " " << what;
    EXPECT_EQ(g[k].scalar_type(), dtype);
    EXPECT_LT(rel_error(g[k], g_ref[k]), tol) << "grad " << names[i] << " " << what;
    ++k;
  }
}

TEST(SelectiveScanCpu, MatchesReferenceFp64) {
  for (bool optional : {false, true})
    for (bool softplus : {false, true}) expect_fast_matches_reference(torch::kFloat64, optional, softplus, 1e-10);
}

TEST(SelectiveScanCpu, MatchesReferenceFp32) {
  for (bool optional : {false, true})
    for (bool softplus : {false, true}) expect_fast_matches_reference(torch::kFloat32, optional, softplus, 1e-4);
}

TEST(SelectiveScanCpu, Bf16InputsComputeInFp32) {
  auto in = make_inputs(2, 4, 3, 9, torch::kFloat32, true, 3);
  auto y32 = std::get<0>(K::selective_scan_cpu(in.u, in.delta, in.A, in.B, in.C, in.D, in.z, in.bias, true));
  auto bf = [](const torch::Tensor& t) { return t.detach().to(torch::kBFloat16); };
  auto y16 = std::get<0>(K::selective_scan_cpu(bf(in.u), bf(in.delta), bf(in.A), bf(in.B), bf(in.C), bf(in.D),
                                               bf(in.z), bf(in.bias), true));
  EXPECT_EQ(y16.scalar_type(), torch::kBFloat16);
  EXPECT_LT(rel_error(y16, y32), 5e-2);
}

TEST(SelectiveScanCpu, BitwiseDeterministicAcrossRunsAndThreadCounts) {
  const int threads = at::get_num_threads();
  std::vector<std::vector<torch::Tensor>> runs;
  for (int nt : {threads, 1, threads}) {
    at::set_num_threads(nt);
    auto in = make_inputs(2, 33, 4, 17, torch::kFloat32, true, 11);
    auto y = std::get<0>(K::selective_scan_cpu(in.u, in.delta, in.A, in.B, in.C, in.D, in.z, in.bias, true));
    std::vector<torch::Tensor> used;
    for (auto& t : in.all()) used.push_back(t);
    auto g = torch::autograd::grad({(y * y).sum()}, used);
    g.push_back(y);
    runs.push_back(g);
  }
  at::set_num_threads(threads);
  for (size_t r = 1; r < runs.size(); ++r)
    for (size_t i = 0; i < runs[0].size(); ++i) EXPECT_TRUE(torch::equal(runs[0][i], runs[r][i])) << "tensor " << i;
}

TEST(SelectiveScan, DispatchHonoursReferenceSwitch) {
  auto in = make_inputs(1, 3, 2, 5, torch::kFloat64, true);
  const bool before = K::use_reference_kernels();
  K::set_use_reference_kernels(false);
  auto fast = K::selective_scan(in.u, in.delta, in.A, in.B, in.C, in.D, in.z, in.bias, true);
  ASSERT_TRUE(fast.grad_fn());
  EXPECT_NE(fast.grad_fn()->name().find("SelectiveScan"), std::string::npos) << fast.grad_fn()->name();
  K::set_use_reference_kernels(true);
  auto ref = K::selective_scan(in.u, in.delta, in.A, in.B, in.C, in.D, in.z, in.bias, true);
  K::set_use_reference_kernels(before);
  EXPECT_EQ(ref.grad_fn()->name().find("SelectiveScan"), std::string::npos) << ref.grad_fn()->name();
  EXPECT_LT(rel_error(fast, ref), 1e-10);
}

TEST(SelectiveScan, RejectsBadShapes) {
  auto in = make_inputs(2, 4, 3, 6, torch::kFloat32, false);
  EXPECT_THROW(K::selective_scan(in.u, in.delta, in.A, in.B.transpose(1, 2), in.C, {}, {}, {}, true), samba::Error);
  EXPECT_THROW(K::selective_scan(in.u, in.delta.narrow(2, 0, 5), in.A, in.B, in.C, {}, {}, {}, true), samba::Error);
  EXPECT_THROW(K::selective_scan(in.u, in.delta, in.A.t(), in.B, in.C, {}, {}, {}, true), samba::Error);
}

TEST(SelectiveStateUpdate, StepByStepEqualsScanFp64) {
  auto in = make_inputs(2, 6, 4, 9, torch::kFloat64, true, 5);
  torch::NoGradGuard no_grad;
  auto [y_scan, h_scan] = K::selective_scan_reference(in.u, in.delta, in.A, in.B, in.C, in.D, in.z, in.bias, true);
  auto state = torch::zeros({2, 6, 4}, torch::kFloat64);
  for (int64_t t = 0; t < 9; ++t) {
    auto y = K::selective_state_update(state, in.u.select(2, t), in.delta.select(2, t), in.A, in.B.select(2, t),
                                       in.C.select(2, t), in.D, in.z.select(2, t), in.bias, true);
    EXPECT_LT(rel_error(y, y_scan.select(2, t)), 1e-12) << "t " << t;
  }
  EXPECT_LT(rel_error(state, h_scan), 1e-12);
}

// ---- causal conv1d ----

TEST(CausalConv1d, MatchesNaiveLoopAndIsCausal) {
  torch::manual_seed(1);
  auto x = torch::randn({2, 3, 7}, torch::kFloat64);
  auto w = torch::randn({3, 4}, torch::kFloat64);
  auto b = torch::randn({3}, torch::kFloat64);
  auto y = K::causal_conv1d(x, w, b, false);
  auto expect = torch::zeros_like(y);
  for (int64_t bb = 0; bb < 2; ++bb)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t t = 0; t < 7; ++t) {
        double acc = b[c].item<double>();
        for (int64_t k = 0; k < 4; ++k) {
          int64_t src = t - 3 + k;  // weight tap K-1 multiplies the current input
          if (src >= 0) acc += w[c][k].item<double>() * x[bb][c][src].item<double>();
        }
        expect[bb][c][t] = acc;
      }
  EXPECT_LT(rel_error(y, expect), 1e-12);
  EXPECT_LT(rel_error(K::causal_conv1d(x, w, b, true), torch::silu(expect)), 1e-12);
  EXPECT_LT(rel_error(K::causal_conv1d(x, w, {}, false), expect - b.view({1, 3, 1})), 1e-12);
}

TEST(CausalConv1d, UpdateStepByStepEqualsFullAndFinalState) {
  torch::manual_seed(2);
  auto x = torch::randn({2, 5, 9}, torch::kFloat64);
  auto w = torch::randn({5, 4}, torch::kFloat64);
  auto b = torch::randn({5}, torch::kFloat64);
  auto full = K::causal_conv1d(x, w, b, true);
  auto state = torch::zeros({2, 5, 3}, torch::kFloat64);
  for (int64_t t = 0; t < 9; ++t) {
    auto y = K::causal_conv1d_update(x.select(2, t), state, w, b, true);
    EXPECT_LT(rel_error(y, full.select(2, t)), 1e-12) << "t " << t;
    EXPECT_TRUE(torch::equal(state, K::causal_conv1d_final_state(x.narrow(2, 0, t + 1), 4))) << "t " << t;
  }
  EXPECT_THROW(K::causal_conv1d_update(x.select(2, 0), state, w.narrow(1, 0, 3), b, true), samba::Error);
}

}  // namespace
