// Selective scan, reference (libtorch ops + autograd) vs the fast kernel, forward and
// forward+backward, at Mamba-like shapes. Usage: bench_selective_scan [batch E N L [reps]]
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>

#include "samba/kernels/selective_scan.h"

namespace {

double time_ms(const std::function<void()>& fn, int reps) {
  fn();  // warm-up: allocator, thread pool
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) fn();
  std::chrono::duration<double, std::milli> elapsed = std::chrono::steady_clock::now() - start;
  return elapsed.count() / reps;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t batch = 8, E = 256, N = 16, L = 256;
  int reps = 3;
  if (argc >= 5) {
    batch = std::atoll(argv[1]);
    E = std::atoll(argv[2]);
    N = std::atoll(argv[3]);
    L = std::atoll(argv[4]);
  }
  if (argc >= 6) reps = std::atoi(argv[5]);
  namespace K = samba::kernels;
  std::printf("selective scan, batch %lld E %lld N %lld L %lld, %d threads, with z/D/delta_bias, softplus\n",
              static_cast<long long>(batch), static_cast<long long>(E), static_cast<long long>(N),
              static_cast<long long>(L), at::get_num_threads());
  std::printf("%-10s %-8s %14s %14s\n", "impl", "dtype", "forward ms", "fwd+bwd ms");
  for (auto dtype : {torch::kFloat32, torch::kFloat64}) {
    torch::manual_seed(0);
    auto o = torch::TensorOptions().dtype(dtype).requires_grad(true);
    auto u = torch::randn({batch, E, L}, o), delta = (torch::randn({batch, E, L}, dtype) - 1).requires_grad_();
    auto A = (-torch::rand({E, N}, dtype) - 0.1).requires_grad_();
    auto B = torch::randn({batch, N, L}, o), C = torch::randn({batch, N, L}, o);
    auto D = torch::randn({E}, o), z = torch::randn({batch, E, L}, o), bias = torch::randn({E}, o);
    using Impl = std::tuple<torch::Tensor, torch::Tensor> (*)(
        const torch::Tensor&, const torch::Tensor&, const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
        const torch::Tensor&, const torch::Tensor&, const torch::Tensor&, bool);
    for (auto [name, impl] : {std::pair<const char*, Impl>{"reference", &K::selective_scan_reference},
                              std::pair<const char*, Impl>{"fast_cpu", &K::selective_scan_cpu}}) {
      double fwd = time_ms(
          [&] {
            torch::NoGradGuard no_grad;
            impl(u, delta, A, B, C, D, z, bias, true);
          },
          reps);
      double both = time_ms(
          [&] {
            auto y = std::get<0>(impl(u, delta, A, B, C, D, z, bias, true));
            torch::autograd::grad({y.sum()}, {u, delta, A, B, C, D, z, bias});
          },
          reps);
      std::printf("%-10s %-8s %14.1f %14.1f\n", name, dtype == torch::kFloat32 ? "fp32" : "fp64", fwd, both);
    }
  }
  return 0;
}
