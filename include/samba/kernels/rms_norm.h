#pragma once
// RMSNorm fused with the residual add that precedes it (pre-norm blocks):
//   residual_out = residual + x                       (fp32; residual undefined: x alone)
//   y            = residual_out * rsqrt(mean(residual_out^2) + eps) * weight   (out_dtype)
// x (..., d) any float dtype, residual (..., d) fp32 or undefined, weight (d). The residual
// stream stays fp32 while the normalised output comes out directly in the matmul dtype
// (bf16), in one pass instead of add + cast + norm + cast.
#include <torch/torch.h>

#include <tuple>

#include "samba/kernels/common.h"

namespace samba::kernels {

// Dispatch: the CUDA kernel for CUDA fp32/bf16 x with fp32 residual, else the reference.
// Returns {y, residual_out}; both are differentiable.
std::tuple<torch::Tensor, torch::Tensor> rms_norm_residual(const torch::Tensor& x, const torch::Tensor& residual,
                                                           const torch::Tensor& weight, double eps,
                                                           torch::ScalarType out_dtype);

// libtorch ops (CPU path and oracle; fp64 stays fp64).
std::tuple<torch::Tensor, torch::Tensor> rms_norm_residual_reference(const torch::Tensor& x,
                                                                     const torch::Tensor& residual,
                                                                     const torch::Tensor& weight, double eps,
                                                                     torch::ScalarType out_dtype);

// The CUDA kernel (src/kernels/rms_norm/rms_norm.cu): one block per row, fixed-order
// reductions, deterministic weight gradient. Throws in builds without CUDA kernels.
std::tuple<torch::Tensor, torch::Tensor> rms_norm_residual_cuda(const torch::Tensor& x, const torch::Tensor& residual,
                                                                const torch::Tensor& weight, double eps,
                                                                torch::ScalarType out_dtype);
bool rms_norm_residual_cuda_supports(const torch::Tensor& x, const torch::Tensor& residual, torch::ScalarType out_dtype);

}  // namespace samba::kernels
