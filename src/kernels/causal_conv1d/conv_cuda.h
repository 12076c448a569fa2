#pragma once
// The CUDA depthwise causal conv1d (+ SiLU), torch-free (see common/cuda_types.h).
//   x (batch, C, L) any layout with a unit stride in C or L; weight (C, K), bias (C) fp32.
#include <cstddef>

#include "../common/cuda_types.h"

namespace samba::kernels::cuda {

constexpr int kConvMaxWidth = 4;  // kernel widths 2..4 (Mamba uses 4)

struct ConvArgs {
  int batch = 0, C = 0, L = 0, K = 0;
  bool silu = false;
  ElemType type = ElemType::kFloat32;  // of x, y, grad_y, grad_x
  View3 x;
  const float* weight = nullptr;         // (C, K) contiguous
  const float* bias = nullptr;           // (C) or null
  const float* initial_state = nullptr;  // (batch, C, K-1) contiguous fp32 or null: the inputs before x
};

Status causal_conv1d_forward(const ConvArgs& a, MutView3 y, void* stream);

size_t causal_conv1d_backward_workspace(const ConvArgs& a);
// grad_weight (C, K) and grad_bias (C, or null) fp32; deterministic (fixed-order partial sums).
Status causal_conv1d_backward(const ConvArgs& a, View3 grad_y, MutView3 grad_x, float* grad_weight, float* grad_bias,
                              float* workspace, void* stream);

}  // namespace samba::kernels::cuda
