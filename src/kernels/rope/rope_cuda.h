#pragma once
// The CUDA RoPE, torch-free (see common/cuda_types.h). Inputs are (B, T, heads, D) with a
// contiguous head dim and any other strides; outputs are contiguous (B, T, heads, D).
#include <cstdint>

#include "../common/cuda_types.h"

namespace samba::kernels::cuda {

struct RopeTensor {
  const void* x = nullptr;
  int64_t s_batch = 0, s_time = 0, s_head = 0;  // elements
  void* y = nullptr;
  int heads = 0;  // 0: absent
};

struct RopeArgs {
  int64_t batch = 0, time = 0;
  int64_t offset = 0;  // table row of time step 0
  int d = 0;           // even
  ElemType type = ElemType::kFloat32;
  // (>= offset + time, d) fp32 rows of stride table_stride; only the first d/2 columns are
  // read (the rotate-half tables repeat the angles over both halves).
  const float* cos = nullptr;
  const float* sin = nullptr;
  int64_t table_stride = 0;
  RopeTensor part[2];  // q and k rotated by one launch; part[1].heads = 0 for one tensor
};

// y = x * cos + rotate_half(x) * sin; `inverse` rotates by the negative angle (the backward:
// x = the output gradient, y = the input gradient).
Status rope_rotate(const RopeArgs& a, bool inverse, void* stream);

}  // namespace samba::kernels::cuda
