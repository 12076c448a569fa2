#pragma once
// Gated linear attention (GLA) and retention (RetNet), the recurrences behind the 'G' and
// 'R' mixers, in the layout of flash-linear-attention so CUDA chunk kernels can later slot in
// behind the same signatures.
//
//   q, k : (B, H, T, Dk)     v : (B, H, T, Dv)     state S : (B, H, Dk, Dv)
//   GLA:        S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t,  g_t = log_g[:, :, t] (B, H, Dk) <= 0
//   retention:  the same with g_t = log(gamma_h) for every key dim and step
//   output:     o_t = scale * q_t S_t        (the current token is included)
//
// The chunked forms compute the same values in O(T * chunk) work with matmuls: within a chunk
// the causal part is an attention-like product, across chunks the state carries the rest.
// Numerical stability (see reference.cpp): every exponent the chunked forms evaluate is a
// difference of cumulative log gates taken in the causal direction, hence <= 0, so nothing
// overflows however strong the forget gates are; values that underflow are truly negligible.
//
// Computation runs in fp32 (fp64 when the inputs are fp64); outputs have q's dtype and
// final states the compute dtype. Everything is plain libtorch ops, differentiable by autograd.
#include <torch/torch.h>

#include <cstdint>

namespace samba::kernels {

struct LinearAttentionResult {
  torch::Tensor output;       // (B, H, T, Dv)
  torch::Tensor final_state;  // (B, H, Dk, Dv); undefined unless requested
};

// Chunk-parallel GLA. chunk_size need not divide T. initial_state may be undefined (= zeros).
LinearAttentionResult gla_chunked(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                  const torch::Tensor& log_g, int64_t chunk_size, double scale,
                                  const torch::Tensor& initial_state = {}, bool output_final_state = false);

// Token-by-token GLA: the oracle for the chunked form (slow, O(T) sequential steps).
LinearAttentionResult gla_recurrent(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                    const torch::Tensor& log_g, double scale,
                                    const torch::Tensor& initial_state = {}, bool output_final_state = false);

// One decoding step: q, k (B, H, Dk), v (B, H, Dv), log_g (B, H, Dk). `state` (B, H, Dk, Dv),
// in the compute dtype, is replaced by the updated state; returns o (B, H, Dv) in q's dtype.
torch::Tensor gla_step(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                       const torch::Tensor& log_g, torch::Tensor& state, double scale);

// Chunk-parallel retention with a fixed decay per head: log_gamma (H), each < 0. Uses the
// scalar-decay specialisation (one (C, C) decay matrix per head instead of per key dim).
LinearAttentionResult retention_chunked(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                        const torch::Tensor& log_gamma, int64_t chunk_size, double scale,
                                        const torch::Tensor& initial_state = {}, bool output_final_state = false);

// Token-by-token retention (the GLA recurrence with the decay broadcast over key dims).
LinearAttentionResult retention_recurrent(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                          const torch::Tensor& log_gamma, double scale,
                                          const torch::Tensor& initial_state = {}, bool output_final_state = false);

// One retention decoding step; shapes as gla_step, log_gamma (H).
torch::Tensor retention_step(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const torch::Tensor& log_gamma, torch::Tensor& state, double scale);

}  // namespace samba::kernels
