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
  float step_size = 0;     // lr / (1 - beta1^t)
  float inv_sqrt_bc2 = 1;  // 1 / sqrt(1 - beta2^t)
  float grad_scale = 1;    // clipping
  // When set: {grad_scale, step_size, inv_sqrt_bc2, apply} read on the device (the step decided
  // there, no host synchronisation) in place of the three fields above; apply == 0 leaves
  // parameters and moments as they are (a skipped step).
  const float* control = nullptr;
};

// nullptr on success, else CUDA's error string.
const char* adamw_flat(const AdamWArgs& a, void* stream);

}  // namespace samba::kernels::cuda
