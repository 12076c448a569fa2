// Per-op kernel benchmark: time of the dispatched op (forward, forward + backward), the
// bytes it must move and the floor those bytes and its exponentials set, on the device
// found (CUDA if present). Usage:
//   bench_kernels [batch=8] [channels=3072] [length=4096] [state=16] [reps=20]
// The floor: max(bytes / HBM bandwidth, exponentials / multi-function-unit rate), with the
// H200's measured 4.3 TB/s and 16 exp per SM per clock at the device's clock.
#include <torch/cuda.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#include "samba/kernels/causal_conv1d.h"
#include "samba/kernels/linear_cross_entropy.h"
#include "samba/kernels/rms_norm.h"
#include "samba/kernels/rope.h"
#include "samba/kernels/selective_scan.h"
#include "samba/kernels/swiglu.h"

namespace {

constexpr double kHbmBytesPerS = 4.3e12;
constexpr double kExpPerS = 16.0 * 132 * 1.98e9;  // H200: 132 SMs, ~1.98 GHz under load
constexpr double kBf16FlopPerS = 989e12;           // H200 dense bf16 tensor-core peak

void sync(const torch::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize();
}

// Runs matrix products for about a second: an idle GPU starts at a low clock and takes a
// while to raise it, which would make the first op measured look several times slower.
void warm_up(const torch::Device& d) {
  if (!d.is_cuda()) return;
  auto m = torch::randn({8192, 8192}, torch::TensorOptions().dtype(torch::kBFloat16).device(d));
  const auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 1.0) {
    for (int i = 0; i < 10; ++i) m = torch::matmul(m, m).mul_(1e-4);
    sync(d);
  }
}

// Median over reps of one call, after two warm-ups.
double median_ms(const torch::Device& d, int reps, const std::function<void()>& fn) {
  fn();
  fn();
  sync(d);
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    sync(d);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// The floor: the largest of the bytes at HBM bandwidth, the exponentials at the
// multi-function unit's rate and the matmul FLOPs at the tensor cores' peak.
void row(const char* op, const char* pass, double ms, double bytes, double exps, double flops = 0) {
  const double floor_ms = std::max({bytes / kHbmBytesPerS, exps / kExpPerS, flops / kBf16FlopPerS}) * 1e3;
  std::printf("| %-16s | %-8s | %9.3f | %10.1f | %9.3f | %6.1f%% |\n", op, pass, ms, bytes / 1e6, floor_ms,
              100.0 * floor_ms / ms);
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t batch = argc > 1 ? std::atoll(argv[1]) : 8, E = argc > 2 ? std::atoll(argv[2]) : 3072,
                L = argc > 3 ? std::atoll(argv[3]) : 4096, N = argc > 4 ? std::atoll(argv[4]) : 16;
  const int reps = argc > 5 ? std::atoi(argv[5]) : 20;
  const torch::Device dev = torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  const auto act = dev.is_cuda() ? torch::kBFloat16 : torch::kFloat32;
  const double el = static_cast<double>(batch * E * L), esz = dev.is_cuda() ? 2.0 : 4.0;
  std::printf("kernels on %s, batch %lld, channels %lld, length %lld, state %lld, %s activations, median of %d\n",
              dev.is_cuda() ? "cuda" : "cpu", static_cast<long long>(batch), static_cast<long long>(E),
              static_cast<long long>(L), static_cast<long long>(N), dev.is_cuda() ? "bf16" : "fp32", reps);
  std::printf("| %-16s | %-8s | %9s | %10s | %9s | %7s |\n", "op", "pass", "ms", "MB moved", "floor ms", "floor");
  std::printf("|------------------|----------|-----------|------------|-----------|---------|\n");
  namespace K = samba::kernels;
  warm_up(dev);
  torch::manual_seed(0);
  auto a = torch::TensorOptions().dtype(act).device(dev);
  auto f = torch::TensorOptions().dtype(torch::kFloat32).device(dev);
  {
    // The Mamba layer's layouts: u (the conv output), delta, z, B, C and the output gradient
    // are channel-contiguous views of matmul outputs.
    auto u = torch::randn({batch, L, E}, a).transpose(1, 2).detach().requires_grad_();
    auto delta = (torch::randn({batch, L, E}, a) * 0.5 - 1).transpose(1, 2).detach().requires_grad_();
    auto z = torch::randn({batch, L, E}, a).transpose(1, 2).detach().requires_grad_();
    auto x_dbl = torch::randn({batch, L, 96 + 2 * N}, a);  // dt_rank 96 as samba-421m
    auto B = x_dbl.narrow(2, 96, N).transpose(1, 2).detach().requires_grad_();
    auto C = x_dbl.narrow(2, 96 + N, N).transpose(1, 2).detach().requires_grad_();
    auto A = (-torch::rand({E, N}, f) - 0.1).requires_grad_();
    auto D = torch::randn({E}, f).requires_grad_(), bias = torch::randn({E}, f).requires_grad_();
    auto go = torch::randn({batch, L, E}, a).transpose(1, 2);
    const double io = 4 * el * esz + 2.0 * batch * N * L * esz;
    const double fwd = median_ms(dev, reps, [&] {
      torch::NoGradGuard ng;
      K::selective_scan(u, delta, A, B, C, D, z, bias, true);
    });
    row("selective_scan", "fwd", fwd, io, el * N);
    const double both = median_ms(dev, reps, [&] {
      auto y = K::selective_scan(u, delta, A, B, C, D, z, bias, true);
      torch::autograd::grad({y}, {u, delta, A, B, C, D, z, bias}, {go});
    });
    // Backward reads u, delta, z, B, C, grad_out and writes three gradients; it recomputes
    // the forward (twice, in its chunked form) so its exponentials are 2-3x the forward's.
    row("selective_scan", "fwd+bwd", both, io + 7 * el * esz, 3 * el * N);
  }
  {
    auto x = torch::randn({batch, L, E}, a).transpose(1, 2).detach().requires_grad_();
    auto w = torch::randn({E, 4}, f).requires_grad_(), b = torch::randn({E}, f).requires_grad_();
    // The output gradient in the layer's layout too (channels contiguous, as x_proj's and the
    // scan's input gradients come back).
    auto go = torch::randn({batch, L, E}, a).transpose(1, 2);
    const double fwd = median_ms(dev, reps, [&] {
      torch::NoGradGuard ng;
      K::causal_conv1d(x, w, b, true);
    });
    row("causal_conv1d", "fwd", fwd, 2 * el * esz, el);
    const double both = median_ms(dev, reps, [&] {
      auto y = K::causal_conv1d(x, w, b, true);
      torch::autograd::grad({y}, {x, w, b}, {go});
    });
    row("causal_conv1d", "fwd+bwd", both, 5 * el * esz, 2 * el);
  }
  {
    // RoPE as the attention layer calls it: q and k after the reshape, 12 heads of 128.
    const int64_t H = 12, Dh = 128;
    auto q = torch::randn({batch, L, H, Dh}, a).requires_grad_();
    auto k = torch::randn({batch, L, H, Dh}, a).requires_grad_();
    auto o64 = torch::TensorOptions().dtype(torch::kFloat64);
    auto angles = torch::outer(torch::arange(L, o64), torch::pow(10000.0, -torch::arange(0, Dh, 2, o64) / Dh));
    angles = torch::cat({angles, angles}, -1);
    auto cos = angles.cos().to(f), sin = angles.sin().to(f);
    auto go = torch::randn({batch, L, H, Dh}, a);
    const double x_el = static_cast<double>(batch * L * H * Dh), table = 2.0 * L * Dh / 2 * 4;
    const double fwd = median_ms(dev, reps, [&] {
      torch::NoGradGuard ng;
      K::rope(q, cos, sin, 0);
    });
    row("rope", "fwd", fwd, 2 * x_el * esz + table, 0);
    const double both = median_ms(dev, reps, [&] {
      auto y = K::rope(q, cos, sin, 0);
      torch::autograd::grad({y}, {q}, {go});
    });
    row("rope", "fwd+bwd", both, 4 * x_el * esz + 2 * table, 0);
    const double qk = median_ms(dev, reps, [&] {
      torch::NoGradGuard ng;
      K::rope_qk(q, k, cos, sin, 0);
    });
    row("rope_qk", "fwd", qk, 4 * x_el * esz + table, 0);
  }
  {
    const double n = static_cast<double>(batch * L) * 4096;
    auto gate = torch::randn({batch * L, 4096}, a).requires_grad_();
    auto up = torch::randn({batch * L, 4096}, a).requires_grad_();
    auto go = torch::randn({batch * L, 4096}, a);
    const double fwd = median_ms(dev, reps, [&] {
      torch::NoGradGuard ng;
      K::swiglu(gate, up);
    });
    row("swiglu", "fwd", fwd, 3 * n * esz, n);
    // Backward reads grad, gate, up and writes both gradients.
    const double both = median_ms(dev, reps, [&] {
      auto y = K::swiglu(gate, up);
      torch::autograd::grad({y}, {gate, up}, {go});
    });
    row("swiglu", "fwd+bwd", both, 8 * n * esz, 2 * n);
  }
  {
    // RMSNorm with the residual add, samba-421m's rows: fp32 stream in and out, bf16 output.
    const int64_t d = 1536;
    const double rows = static_cast<double>(batch * L);
    auto x = torch::randn({batch, L, d}, a).requires_grad_();
    auto res = torch::randn({batch, L, d}, f).requires_grad_();
    auto w = torch::ones({d}, f).requires_grad_();
    auto gy = torch::randn({batch, L, d}, a), gr = torch::randn({batch, L, d}, f);
    const double fwd = median_ms(dev, reps, [&] {
      torch::NoGradGuard ng;
      K::rms_norm_residual(x, res, w, 1e-5, act);
    });
    // Reads x and the fp32 stream, writes the fp32 stream and y.
    row("rms_norm_resid", "fwd", fwd, rows * d * (esz + 4 + 4 + esz), 0);
    const double both = median_ms(dev, reps, [&] {
      auto [y, s] = K::rms_norm_residual(x, res, w, 1e-5, act);
      torch::autograd::grad({y, s}, {x, res, w}, {gy, gr});
    });
    // Backward reads the stream, gy, the stream's gradient; writes dx and d residual.
    row("rms_norm_resid", "fwd+bwd", both, rows * d * (2 * esz + 8 + (4 + esz + 4) + esz + 4), 0);
  }
  {
    // The LM head and its loss: samba-421m's hidden size and vocabulary.
    const int64_t d = 1536, V = 32000;
    const double T = static_cast<double>(batch * L);
    auto h = torch::randn({batch, L, d}, a).mul_(0.5).requires_grad_();
    auto w = torch::randn({V, d}, a).mul_(0.02).requires_grad_();
    auto tgt = torch::randint(V, {batch, L}, torch::TensorOptions().dtype(torch::kLong).device(dev));
    const double fwd = median_ms(dev, reps, [&] {
      torch::NoGradGuard ng;
      K::linear_cross_entropy(h, w, tgt);
    });
    // Forward without grad: one (T x d) x (d x V) product.
    row("lm_head_xent", "fwd", fwd, 0, T * V, 2 * T * d * V);
    const double both = median_ms(dev, reps, [&] {
      auto loss = K::linear_cross_entropy(h, w, tgt);
      torch::autograd::grad({loss}, {h, w});
    });
    // With grad: the logits product and the two gradient products, one exponential per logit.
    row("lm_head_xent", "fwd+bwd", both, 0, T * V, 6 * T * d * V);
  }
  return 0;
}
