#pragma once
// Initialisation schemes (samba-spec.md section 3), shared by every layer so no layer
// re-derives the formulas.
//   mamba_init: PyTorch default for linear layers, biases zero, embeddings N(0, 0.02), and
//     every projection writing into the residual stream divided by sqrt(r * n_blocks); since
//     r is the number of residual sublayers per block, r * n_blocks = all sublayers.
//   TinyLlama: linear weights N(0, sqrt(2 / (5 d))), residual-output projections
//     N(0, 1 / (sqrt(d) * n_blocks)), biases zero.
#include <torch/torch.h>

#include <cstdint>

#include "samba/core/config.h"

namespace samba {

struct InitSpec {
  InitScheme scheme = InitScheme::Mamba;
  int64_t d_model = 0;
  int64_t n_blocks = 1;
  int64_t n_sublayers = 1;  // r * n_blocks
  double embed_std = 0.02;

  static InitSpec from_config(const ModelConfig& cfg);
  double tinyllama_std() const;           // sqrt(2 / (5 d))
  double tinyllama_residual_std() const;  // 1 / (sqrt(d) * n_blocks)
  double mamba_residual_divisor() const;  // sqrt(r * n_blocks)
};

// A linear layer (or conv weight) that reads from the stream or is internal to a layer.
void init_input_projection(torch::nn::Linear& linear, const InitSpec& spec);
// A projection whose output is added to the residual stream (out_proj, down, o_proj).
void init_output_projection(torch::nn::Linear& linear, const InitSpec& spec);
// PyTorch's default Linear init (kaiming-uniform a = sqrt(5), bias U(+-1/sqrt(fan_in))),
// re-applied so that init_parameters() is idempotent.
void reset_linear_default(torch::nn::Linear& linear);

}  // namespace samba
