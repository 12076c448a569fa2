#pragma once
// Depthwise causal 1-D convolution (Mamba's conv1d, the short convolution of the SC
// ablation): output t sees inputs t-K+1..t of its own channel only.
//   x (batch, C, L), weight (C, K), bias (C) or undefined.
// The decoding state holds the last K-1 inputs of each channel, (batch, C, K-1), oldest first.
#include <torch/torch.h>

namespace samba::kernels {

// y (batch, C, L) in x's dtype; `silu` applies SiLU after the bias.
torch::Tensor causal_conv1d(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, bool silu);

// The decoding state after consuming all of x: its last K-1 inputs, zero-padded on the left
// when L < K-1. (batch, C, K-1).
torch::Tensor causal_conv1d_final_state(const torch::Tensor& x, int64_t kernel_size);

// One step: x (batch, C) -> y (batch, C); `state` (batch, C, K-1) is updated in place.
torch::Tensor causal_conv1d_update(const torch::Tensor& x, torch::Tensor& state, const torch::Tensor& weight,
                                   const torch::Tensor& bias, bool silu);

}  // namespace samba::kernels
