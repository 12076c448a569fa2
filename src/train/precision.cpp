#include "samba/train/precision.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "samba/core/error.h"

#ifdef SAMBA_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace samba {

torch::Device pick_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  const bool have_cuda = torch::cuda::is_available();
  if (name == "cuda") {
    check(have_cuda, "device: cuda was requested but no CUDA GPU is available (or this build has no CUDA); "
                     "use device: auto or cpu");
    return torch::Device(torch::kCUDA, 0);
  }
  return have_cuda ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
}

namespace {
#if TORCH_VERSION_MAJOR >= 2
bool cuda_autocast_enabled() { return at::autocast::is_autocast_enabled(at::kCUDA); }
void set_cuda_autocast(bool on) {
  at::autocast::set_autocast_enabled(at::kCUDA, on);
  if (on) at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
}
#else
bool cuda_autocast_enabled() { return at::autocast::is_enabled(); }
void set_cuda_autocast(bool on) {
  at::autocast::set_enabled(on);
  if (on) at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
}
#endif
}  // namespace

AutocastScope::AutocastScope(const torch::Device& device, bool enabled) {
  if (!enabled || !device.is_cuda()) return;
  previous_ = cuda_autocast_enabled();
  set_cuda_autocast(true);
  active_ = true;
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  set_cuda_autocast(previous_);
  at::autocast::clear_cache();
}

double memory_in_use_bytes(const torch::Device& device) {
#ifdef SAMBA_WITH_CUDA
  if (device.is_cuda()) {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) return static_cast<double>(total_b - free_b);
    return 0;
  }
#endif
  (void)device;
  long pages = 0, resident = 0;
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

double peak_flops(const torch::Device& device, bool bf16) {
  if (device.is_cuda()) return bf16 ? 989e12 : 67e12;  // H100 SXM dense bf16 / fp32
  torch::NoGradGuard no_grad;
  const int64_t n = 512;
  auto a = torch::randn({n, n});
  auto b = torch::randn({n, n});
  auto c = torch::mm(a, b);  // warm-up
  int reps = 0;
  const auto start = std::chrono::steady_clock::now();
  double elapsed = 0;
  while (elapsed < 0.3) {
    c = torch::mm(a, b);
    ++reps;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  return 2.0 * n * n * n * reps / elapsed;
}

}  // namespace samba
