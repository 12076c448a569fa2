#pragma once
// Where a rank computes and what that hardware offers: the device (cuda:<local rank> in a
// launch), bf16 autocast, memory readings from the CUDA caching allocator, and the peak
// throughput MFU is measured against. Hides the libtorch 1.13 / 2.x API splits.
#include <torch/torch.h>

#include <optional>
#include <string>

#include "samba/runtime/launch_env.h"

namespace samba::runtime {

// "auto" -> CUDA when available, else CPU; "cuda" without a GPU is an error. One process: cuda:0.
torch::Device pick_device(const std::string& name);
// The same choice for a rank of a launch: a GPU run uses cuda:<env.local_rank> (one process
// per GPU; an error names LOCAL_RANK when there are fewer GPUs) and makes it the current CUDA
// device. A CPU run ignores the ranks.
torch::Device pick_device(const std::string& name, const LaunchEnv& env);

// libtorch's deterministic algorithms, and cuBLAS's fixed workspace (its reduction order
// depends on the workspace otherwise): what a recipe's `deterministic: true` turns on.
void use_deterministic_algorithms();

// Enables bf16 autocast for CUDA while alive (no-op when `enabled` is false or on CPU);
// clears the autocast cast cache on exit, as a training step must.
class AutocastScope {
 public:
  AutocastScope(const torch::Device& device, bool enabled);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  bool previous_ = false;
};

// Bytes. On CUDA from the caching allocator (what tensors hold, what the allocator reserved
// from the driver, and the high-water mark of the former), so other processes on the GPU do
// not count. On CPU from /proc: resident set size and its high-water mark.
struct MemoryStats {
  double allocated = 0;
  double reserved = 0;
  double peak_allocated = 0;
};
MemoryStats memory_stats(const torch::Device& device);
// Starts a new high-water mark (e.g. per logging interval).
void reset_peak_memory(const torch::Device& device);
// The figure the training log shows: peak allocated on CUDA, resident size on CPU.
double memory_in_use_bytes(const torch::Device& device);

// Dense (no sparsity) peak throughput of a GPU model, from the vendor data sheets.
struct PeakFlops {
  double bf16 = 0;  // tensor cores, bf16 inputs, fp32 accumulation
  double fp32 = 0;  // CUDA cores, no TF32
};
// By the CUDA device name ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", ...); nullopt
// for a model not in the table.
std::optional<PeakFlops> gpu_peak_flops(const std::string& device_name);
// The throughput to compute MFU against: the table for a known GPU; otherwise (a CPU, an
// unknown GPU) a short matmul measurement on the device, since no published peak applies.
double peak_flops(const torch::Device& device, bool bf16);
// The CUDA device's name, "cpu" for the CPU.
std::string device_name(const torch::Device& device);

}  // namespace samba::runtime
