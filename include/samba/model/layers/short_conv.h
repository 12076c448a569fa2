#pragma once
// Short convolution ("SC" ablation): depthwise causal conv1d over time, no bias, then SiLU.
// Applied to the projected q, k, v of attention (and reusable by GLA). Output t mixes inputs
// t - K + 1 .. t of the same channel:  y[t, c] = silu(sum_j weight[c, 0, j] * x[t - K + 1 + j, c]).
//
// Parameter: `weight` (C, 1, K), the Conv1d depthwise layout (exportable as such).
// Decoding state: the last K - 1 inputs, (B, C, K - 1), oldest first.
#include <torch/torch.h>

#include <cstdint>

namespace samba {

class ShortConvImpl : public torch::nn::Module {
 public:
  ShortConvImpl(int64_t channels, int64_t kernel);

  // (B, T, C) -> (B, T, C)
  torch::Tensor forward(const torch::Tensor& x);

  // Zeros (B, C, K - 1): the inputs before the first token are zero, as in forward's padding.
  torch::Tensor make_state(int64_t batch, const torch::TensorOptions& options) const;
  // x (B, 1, C) -> (B, 1, C); `state` is replaced by the rolled window.
  torch::Tensor step(const torch::Tensor& x, torch::Tensor& state);

  // PyTorch's Conv1d default (kaiming-uniform a = sqrt(5), fan_in = K for a depthwise conv).
  void reset_parameters();

  int64_t channels;
  int64_t kernel;
  torch::Tensor weight;
};
TORCH_MODULE(ShortConv);

}  // namespace samba
