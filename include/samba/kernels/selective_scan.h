#pragma once
// The selective scan of Mamba (S6), with mamba_ssm's tensor layout so that the CUDA kernel
// can later slot in behind the same signatures.
//
//   u, delta, z : (batch, E, L)      A : (E, N)      B, C : (batch, N, L)
//   D, delta_bias : (E)              z, D, delta_bias may be undefined (= absent)
//
//   dt_t  = delta_t + delta_bias            (softplus'ed when delta_softplus)
//   h_t   = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t        (h_0 = 0, per channel e)
//   y_t   = C_t . h_t + D * u_t
//   out_t = y_t * silu(z_t)                  (when z is given)
//
// The result has u's dtype; the recurrence runs in fp32 (fp64 when u is fp64), whatever the
// input dtype, because bf16 states drift over long sequences.
#include <torch/torch.h>

#include <tuple>

#include "samba/kernels/common.h"

namespace samba::kernels {

// Dispatching entry points: the CUDA kernel for CUDA tensors it supports (built with
// SAMBA_WITH_CUDA; fp32/bf16, N <= 128), the fast CPU kernel for CPU tensors, the reference
// for everything else and everywhere when use_reference_kernels().
torch::Tensor selective_scan(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A,
                             const torch::Tensor& B, const torch::Tensor& C, const torch::Tensor& D,
                             const torch::Tensor& z, const torch::Tensor& delta_bias, bool delta_softplus);
// Also returns the state after the last step, (batch, E, N) in the compute dtype, to prefill
// a decoder. The state is not differentiable on the fast path.
std::tuple<torch::Tensor, torch::Tensor> selective_scan_with_state(
    const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A, const torch::Tensor& B,
    const torch::Tensor& C, const torch::Tensor& D, const torch::Tensor& z, const torch::Tensor& delta_bias,
    bool delta_softplus);

// One decoding step. state (batch, E, N) is updated in place (keep it fp32/fp64);
// x, dt, z : (batch, E); B, C : (batch, N); returns y (batch, E) in x's dtype.
torch::Tensor selective_state_update(torch::Tensor& state, const torch::Tensor& x, const torch::Tensor& dt,
                                     const torch::Tensor& A, const torch::Tensor& B, const torch::Tensor& C,
                                     const torch::Tensor& D, const torch::Tensor& z, const torch::Tensor& dt_bias,
                                     bool dt_softplus);

// The oracle: plain libtorch ops, differentiable by autograd, any device, fp64-capable.
std::tuple<torch::Tensor, torch::Tensor> selective_scan_reference(
    const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A, const torch::Tensor& B,
    const torch::Tensor& C, const torch::Tensor& D, const torch::Tensor& z, const torch::Tensor& delta_bias,
    bool delta_softplus);

// The CPU kernel: hand-written forward and backward (an autograd Function), parallel over
// (batch, channel). CPU tensors only.
std::tuple<torch::Tensor, torch::Tensor> selective_scan_cpu(
    const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A, const torch::Tensor& B,
    const torch::Tensor& C, const torch::Tensor& D, const torch::Tensor& z, const torch::Tensor& delta_bias,
    bool delta_softplus);

// The CUDA kernel (src/kernels/selective_scan/scan.cu): fp32 state, u's dtype (fp32 or
// bf16) for the other activations, deterministic backward that recomputes the forward.
// Throws in builds without CUDA kernels and for inputs selective_scan_cuda_supports() rejects.
std::tuple<torch::Tensor, torch::Tensor> selective_scan_cuda(
    const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A, const torch::Tensor& B,
    const torch::Tensor& C, const torch::Tensor& D, const torch::Tensor& z, const torch::Tensor& delta_bias,
    bool delta_softplus);
bool selective_scan_cuda_supports(const torch::Tensor& u, const torch::Tensor& A);

// Shape and dtype checks shared by every implementation (throws samba::Error).
void check_selective_scan_args(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A,
                               const torch::Tensor& B, const torch::Tensor& C, const torch::Tensor& D,
                               const torch::Tensor& z, const torch::Tensor& delta_bias);

}  // namespace samba::kernels
