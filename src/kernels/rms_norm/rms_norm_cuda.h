#pragma once
// The CUDA RMSNorm + residual add, torch-free (see common/cuda_types.h). Rows are
// contiguous: x, residual, residual_out, y and their gradients are (rows, d) row-major.
#include <cstddef>
#include <cstdint>

#include "../common/cuda_types.h"

namespace samba::kernels::cuda {

struct RmsNormArgs {
  int64_t rows = 0;
  int d = 0;
  float eps = 1e-5f;
  ElemType x_type = ElemType::kFloat32, y_type = ElemType::kFloat32;
  const void* x = nullptr;
  const float* residual = nullptr;  // or null
  const float* weight = nullptr;
};

// residual_out (rows, d) fp32, y (rows, d) y_type, rstd (rows) fp32 (kept for backward).
Status rms_norm_forward(const RmsNormArgs& a, float* residual_out, void* y, float* rstd, void* stream);

size_t rms_norm_backward_workspace(const RmsNormArgs& a);
// grad_y (rows, d) y_type; grad_residual_out (rows, d) fp32 or null. Writes grad_x (x_type),
// grad_residual (fp32, or null) and grad_weight (d) fp32 (deterministic, fixed-order sums).
Status rms_norm_backward(const RmsNormArgs& a, const float* residual_out, const float* rstd, const void* grad_y,
                         const float* grad_residual_out, void* grad_x, float* grad_residual, float* grad_weight,
                         float* workspace, void* stream);

}  // namespace samba::kernels::cuda
