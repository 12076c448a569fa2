#pragma once
// Device choice, bf16 autocast and memory readings, hiding the libtorch 1.13 / 2.x API split.
#include <torch/torch.h>

#include <string>

namespace samba {

// "auto" -> CUDA when available, else CPU; "cuda" without a GPU is an error.
torch::Device pick_device(const std::string& name);

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

// Bytes in use: the CUDA caching allocator's peak on GPU, the process RSS on CPU.
double memory_in_use_bytes(const torch::Device& device);
// Dense matmul throughput to compute MFU against: H100 bf16 dense on GPU; on CPU a short
// fp32 matmul measurement (there is no published peak for an arbitrary CPU).
double peak_flops(const torch::Device& device, bool bf16);

}  // namespace samba
