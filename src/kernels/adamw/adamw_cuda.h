#pragma once
// The fused AdamW update over one contiguous range of the flat fp32 buffers (dist/flat_params.h):
// one pass reads parameter, gradient and both moments and writes parameter and moments —
// instead of eight elementwise kernels. Torch-free so CI compiles it with nvcc alone.
#include <cstdint>

namespace samba::kernels::cuda {

struct AdamWArgs {
  float* param = nullptr;
  const float* grad = nullptr;
  float* exp_avg = nullptr;
  float* exp_avg_sq = nullptr;
  int64_t n = 0;
  float lr = 0, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0;
  // Device memory, 4 floats {grad_scale (clipping), step_size = lr / (1 - beta1^t),
  // inv_sqrt_bc2 = 1 / sqrt(1 - beta2^t), apply}: the step is decided on the device, no host
  // synchronisation; apply == 0 leaves parameters and moments as they are (a skipped step).
  const float* control = nullptr;
};

// nullptr on success, else CUDA's error string.
const char* adamw_flat(const AdamWArgs& a, void* stream);

}  // namespace samba::kernels::cuda
