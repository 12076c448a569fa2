#pragma once
// Rotary position embedding on (B, T, H, D) heads, the layout FlashAttention-2 takes
// (rotate-half convention over the full head dim, see model/layers/rope.h):
//   y = x * cos + rotate_half(x) * sin,  rotate_half([x1, x2]) = [-x2, x1]
// cos, sin: (L, D) tables of the angles of positions 0 .. L-1, the D/2 angles repeated over
// both halves (RotaryEmbedding::cos_sin builds them); x holds positions offset .. offset+T-1,
// so L >= offset + T. The rotation is computed in the tables' dtype (fp32, or fp64 for fp64
// x) and y comes out in x's dtype. The tables get no gradient; x's gradient is the rotation
// by the negative angle.
#include <torch/torch.h>

#include <utility>

#include "samba/kernels/common.h"

namespace samba::kernels {

// Dispatch: the CUDA kernel for CUDA fp32/bf16 x with fp32 tables, else the reference.
torch::Tensor rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin, int64_t offset);
// q (B, T, Hq, D) and k (B, T, Hk, D) at the same positions, in one launch on CUDA.
std::pair<torch::Tensor, torch::Tensor> rope_qk(const torch::Tensor& q, const torch::Tensor& k,
                                                const torch::Tensor& cos, const torch::Tensor& sin, int64_t offset);

// libtorch ops (CPU path and oracle; fp64 stays fp64).
torch::Tensor rope_reference(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                             int64_t offset);
std::pair<torch::Tensor, torch::Tensor> rope_qk_reference(const torch::Tensor& q, const torch::Tensor& k,
                                                          const torch::Tensor& cos, const torch::Tensor& sin,
                                                          int64_t offset);
torch::Tensor rotate_half(const torch::Tensor& x);

// The CUDA kernel (src/kernels/rope/rope.cu): one pass over x reading the fp32 tables, any
// strides with a contiguous last dim; backward one pass too. Throws without CUDA kernels.
torch::Tensor rope_cuda(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin, int64_t offset);
std::pair<torch::Tensor, torch::Tensor> rope_qk_cuda(const torch::Tensor& q, const torch::Tensor& k,
                                                     const torch::Tensor& cos, const torch::Tensor& sin,
                                                     int64_t offset);
bool rope_cuda_supports(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

}  // namespace samba::kernels
