#pragma once
// Initialisation schemes (samba-spec.md section 3), shared by every layer so no layer
// re-derives the formulas.
//   mamba_init: each layer's own construction-time init for linear weights (PyTorch default
//     for Mamba, attention, MLP; fla's xavier_uniform(gain 2^-2.5) for GLA and RetNet; N(0, 0.02)
//     for Mega-S6), biases zero, embeddings N(0, 0.02), and every projection writing into the
//     residual stream divided by sqrt(r * n_blocks); since r is the number of residual
//     sublayers per block, r * n_blocks = all sublayers.
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
// fla's layers (GLA, RetNet): xavier_uniform with gain 2^-2.5 under mamba_init (the reference
// keeps fla's own init and only zeroes biases); TinyLlama as init_input_projection.
void init_fla_projection(torch::nn::Linear& linear, const InitSpec& spec);
// fla's o_proj: as above, then divided by sqrt(r * n_blocks); TinyLlama as init_output_projection.
void init_fla_output_projection(torch::nn::Linear& linear, const InitSpec& spec);
// The gain fla uses (2^-2.5).
double fla_xavier_gain();
// PyTorch's default Linear init (kaiming-uniform a = sqrt(5), bias U(+-1/sqrt(fan_in))),
// re-applied so that init_parameters() is idempotent.
void reset_linear_default(torch::nn::Linear& linear);

}  // namespace samba
