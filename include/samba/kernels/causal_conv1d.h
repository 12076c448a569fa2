#pragma once
// Depthwise causal 1-D convolution (Mamba's conv1d, the short convolution of the SC
// ablation): output t sees inputs t-K+1..t of its own channel only.
//   x (batch, C, L), weight (C, K), bias (C) or undefined.
// The decoding state holds the last K-1 inputs of each channel, (batch, C, K-1), oldest first.
#include <torch/torch.h>

#include <tuple>

#include "samba/kernels/common.h"

namespace samba::kernels {

// y (batch, C, L) in x's dtype; `silu` applies SiLU after the bias. Dispatches: the CUDA
// kernel for CUDA fp32/bf16 inputs with K in 2..4 (SAMBA_WITH_CUDA), else the reference.
torch::Tensor causal_conv1d(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, bool silu);

// The same, continuing from a decoding state: `initial_state` (batch, C, K-1) holds the
// inputs before x (undefined = zeros; it gets no gradient). Also returns the state after x.
std::tuple<torch::Tensor, torch::Tensor> causal_conv1d_with_state(const torch::Tensor& x, const torch::Tensor& weight,
                                                                  const torch::Tensor& bias, bool silu,
                                                                  const torch::Tensor& initial_state);

// The implementations behind the dispatch: torch's conv1d (CPU path and oracle), and the CUDA
// kernel (src/kernels/causal_conv1d/conv.cu; deterministic backward; throws without CUDA).
torch::Tensor causal_conv1d_reference(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                                      bool silu, const torch::Tensor& initial_state = {});
torch::Tensor causal_conv1d_cuda(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                                 bool silu, const torch::Tensor& initial_state = {});
bool causal_conv1d_cuda_supports(const torch::Tensor& x, const torch::Tensor& weight);

// The decoding state after consuming all of x: its last K-1 inputs, zero-padded on the left
// when L < K-1. (batch, C, K-1).
torch::Tensor causal_conv1d_final_state(const torch::Tensor& x, int64_t kernel_size);

// One step: x (batch, C) -> y (batch, C); `state` (batch, C, K-1) is updated in place.
torch::Tensor causal_conv1d_update(const torch::Tensor& x, torch::Tensor& state, const torch::Tensor& weight,
                                   const torch::Tensor& bias, bool silu);

}  // namespace samba::kernels
