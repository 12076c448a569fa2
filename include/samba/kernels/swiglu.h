#pragma once
// The SwiGLU activation: y = silu(gate) * up, elementwise; gate and up of one shape and
// float dtype, y in that dtype. The backward reads (grad, gate, up) and forms both input
// gradients in one pass, so only gate and up are kept for it (not silu(gate) as well).
#include <torch/torch.h>

#include "samba/kernels/common.h"

namespace samba::kernels {

// Dispatch: the CUDA kernel for CUDA fp32/bf16 inputs, else the reference.
torch::Tensor swiglu(const torch::Tensor& gate, const torch::Tensor& up);

// libtorch ops (CPU path and oracle).
torch::Tensor swiglu_reference(const torch::Tensor& gate, const torch::Tensor& up);

// The CUDA kernel (src/kernels/swiglu/swiglu.cu): fp32 arithmetic, 16-byte accesses where
// aligned. Throws in builds without CUDA kernels.
torch::Tensor swiglu_cuda(const torch::Tensor& gate, const torch::Tensor& up);
bool swiglu_cuda_supports(const torch::Tensor& gate, const torch::Tensor& up);

}  // namespace samba::kernels
