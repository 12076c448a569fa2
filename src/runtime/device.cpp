#include "samba/runtime/device.h"

#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <torch/version.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "samba/core/error.h"

#ifdef SAMBA_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime_api.h>
#endif

namespace samba::runtime {

torch::Device pick_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  const bool have_cuda = torch::cuda::is_available();
  if (name == "cuda") {
    check(have_cuda, "device: cuda was requested but no CUDA GPU is available (or this build has no CUDA); "
                     "use device: auto or cpu");
    return torch::Device(torch::kCUDA, 0);
  }
  check(name == "auto", "device: '", name, "' is not one of auto, cuda, cpu");
  return have_cuda ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
}

void use_deterministic_algorithms() {
  ::setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
  at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/false);
}

torch::Device pick_device(const std::string& name, const LaunchEnv& env) {
  const torch::Device base = pick_device(name);
  if (!base.is_cuda()) return base;
  const auto gpus = static_cast<int>(torch::cuda::device_count());
  // A process that sees exactly one GPU was bound to it by the launcher (srun --gpus-per-task,
  // CUDA_VISIBLE_DEVICES per rank): that GPU is its own, whatever its local rank.
  if (gpus == 1) return torch::Device(torch::kCUDA, 0);
  check(env.local_rank < gpus, "device: rank ", env.rank, " has local rank ", env.local_rank, " (LOCAL_RANK) but only ",
        gpus, " GPU(s) are visible on this node; start one process per GPU (torchrun --nproc-per-node <= ", gpus,
        ", or fewer SLURM tasks per node) or check CUDA_VISIBLE_DEVICES");
  const torch::Device device(torch::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank));
#ifdef SAMBA_WITH_CUDA
  // Allocations and kernels without an explicit device (and NCCL's communicator) go here.
  c10::cuda::set_device(device.index());
#endif
  return device;
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

// A "Key:   123 kB" line of /proc/self/status, in bytes.
double proc_status_bytes(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(key);
  while (std::getline(in, line)) {
    if (line.compare(0, n, key) == 0 && line.size() > n && line[n] == ':') {
      std::istringstream fields(line.substr(n + 1));
      double kb = 0;
      fields >> kb;
      return kb * 1024.0;
    }
  }
  return 0;
}
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

#ifdef SAMBA_WITH_CUDA
namespace {
// The caching allocator's statistics exist once CUDA is initialised: before the process's
// first CUDA tensor they throw "Invalid device argument". An empty tensor initialises it.
void ensure_cuda_initialised(const torch::Device& device) {
  static const bool done = [&] {
    (void)torch::empty({0}, torch::TensorOptions().device(device));
    return true;
  }();
  (void)done;
}
}  // namespace
#endif

MemoryStats memory_stats(const torch::Device& device) {
  MemoryStats m;
#ifdef SAMBA_WITH_CUDA
  if (device.is_cuda()) {
    ensure_cuda_initialised(device);
    namespace alloc = c10::cuda::CUDACachingAllocator;
    const auto stats = alloc::getDeviceStats(device.index());
    constexpr size_t kAggregate = 0;  // StatType::AGGREGATE: small and large pools together
    m.allocated = static_cast<double>(stats.allocated_bytes[kAggregate].current);
    m.reserved = static_cast<double>(stats.reserved_bytes[kAggregate].current);
    m.peak_allocated = static_cast<double>(stats.allocated_bytes[kAggregate].peak);
    return m;
  }
#endif
  (void)device;
  m.allocated = m.reserved = proc_status_bytes("VmRSS");
  m.peak_allocated = proc_status_bytes("VmHWM");
  return m;
}

void reset_peak_memory(const torch::Device& device) {
#ifdef SAMBA_WITH_CUDA
  if (device.is_cuda()) {
    ensure_cuda_initialised(device);
    c10::cuda::CUDACachingAllocator::resetPeakStats(device.index());
    return;
  }
#endif
  (void)device;
  // Linux resets the resident high-water mark (VmHWM) when "5" is written here; kernels
  // without it leave the old mark, which only overstates the peak.
  if (std::FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
    std::fputs("5", f);
    std::fclose(f);
  }
}

double memory_in_use_bytes(const torch::Device& device) {
  const auto m = memory_stats(device);
  return device.is_cuda() ? m.peak_allocated : m.allocated;
}

std::string device_name(const torch::Device& device) {
#ifdef SAMBA_WITH_CUDA
  if (device.is_cuda()) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, device.index()) == cudaSuccess) return prop.name;
    return "unknown CUDA device";
  }
#endif
  return device.is_cuda() ? "unknown CUDA device" : "cpu";
}

std::optional<PeakFlops> gpu_peak_flops(const std::string& device_name) {
  // Dense throughput from NVIDIA's data sheets (the sparsity figures are twice these). A
  // variant token ("PCIe", "NVL") selects a board with lower clocks / power than the SXM one.
  struct Row {
    const char* model;
    const char* variant;  // "" = any board of this model not matched by a variant row
    double bf16_tflops, fp32_tflops;
  };
  static const Row kTable[] = {
      {"H100", "PCIe", 756.5, 51.2}, {"H100", "NVL", 835.5, 60.0}, {"H100", "", 989.4, 66.9},
      {"H200", "NVL", 835.5, 60.0},  {"H200", "", 989.4, 66.9},    {"H800", "PCIe", 756.5, 51.2},
      {"H800", "", 989.4, 66.9},     {"GH200", "", 989.4, 66.9},   {"A100", "", 312.0, 19.5},
      {"A800", "", 312.0, 19.5},     {"L40S", "", 362.05, 91.6},   {"L40", "", 181.05, 90.5},
      {"L4", "", 121.0, 30.3},       {"A10", "", 125.0, 31.2},     {"A30", "", 165.0, 10.3},
  };
  // Whole tokens only, so "A10" does not match "A100" or "A10G", nor "L4" match "L40S".
  std::vector<std::string> tokens;
  std::string token;
  for (char c : device_name + " ") {
    if (c == ' ' || c == '-' || c == '_') {
      if (!token.empty()) tokens.push_back(token);
      token.clear();
    } else {
      token += c;
    }
  }
  auto has = [&](const std::string& t) {
    for (const auto& x : tokens) {
      if (x == t) return true;
    }
    return false;
  };
  for (const auto& row : kTable) {
    if (has(row.model) && (*row.variant == '\0' || has(row.variant))) {
      return PeakFlops{row.bf16_tflops * 1e12, row.fp32_tflops * 1e12};
    }
  }
  return std::nullopt;
}

double peak_flops(const torch::Device& device, bool bf16) {
  if (device.is_cuda()) {
    if (const auto known = gpu_peak_flops(device_name(device))) return bf16 ? known->bf16 : known->fp32;
  }
  // Measure: a square matmul repeated for ~0.3 s, read back so the GPU's queue is included.
  torch::NoGradGuard no_grad;
  const int64_t n = device.is_cuda() ? 4096 : 512;
  const auto opts = torch::TensorOptions().device(device).dtype(device.is_cuda() && bf16 ? torch::kBFloat16
                                                                                        : torch::kFloat32);
  auto a = torch::randn({n, n}, opts);
  auto b = torch::randn({n, n}, opts);
  auto c = torch::mm(a, b);  // warm-up
  c.sum().item<float>();
  int reps = 0;
  const auto start = std::chrono::steady_clock::now();
  double elapsed = 0;
  while (elapsed < 0.3) {
    c = torch::mm(a, b);
    ++reps;
    if (device.is_cuda() && reps % 8 != 0) continue;
    c.sum().item<float>();
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  return 2.0 * n * n * n * reps / elapsed;
}

}  // namespace samba::runtime
