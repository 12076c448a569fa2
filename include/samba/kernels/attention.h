#pragma once
// Causal (optionally sliding-window) softmax attention.
//
// Layout: q (B, Tq, H, D); k, v (B, Tk, Hk, D) with Hk dividing H (GQA native: query head h
// reads kv head h / (H / Hk)). Queries are the LAST Tq positions of the Tk keys, so query i
// sits at absolute position p = Tk - Tq + i; with Tq == Tk this is ordinary self-attention,
// with Tq < Tk it is prefill/decoding against a cache. Key j is visible to the query at p iff
//     p - W < j <= p          (W = window; W <= 0 or W >= Tk means full causal attention)
// so a query always sees itself and at most W keys.
//
// Two implementations, one contract:
//   * FlashAttention-2 (libtorch >= 2, SAMBA_WITH_CUDA, CUDA bf16/fp16, Tq == Tk): the
//     sliding-window FA2 kernel of ATen, forward and backward, in an autograd Function.
//   * reference: explicit masked softmax accumulated in fp32 (fp64 for fp64 inputs), queries
//     processed in blocks that only touch the keys inside their window, so memory is
//     O(Tq * (block + W)) instead of O(Tq * Tk) — evaluation runs at 4x the training length.
#include <torch/torch.h>

#include <cstdint>

namespace samba {

// Dispatches to FlashAttention-2 when possible, else to the reference.
torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t window,
                               double scale);

// The pure-libtorch oracle and CPU path. block_q <= 0 picks a block size automatically
// (one block for short sequences); any positive block_q gives the same result.
torch::Tensor causal_attention_reference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                         int64_t window, double scale, int64_t block_q = 0);

// True when causal_attention would take the FlashAttention-2 path for these inputs.
bool flash_attention_applicable(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

// Decoding: one new query (B, 1, H, D) against the first `n_valid` slots of a KV cache
// (B, capacity, Hk, D), the new token's key already written. Every valid slot is visible:
// the cache holds exactly the keys in the window, in any slot order (a ring buffer), since
// softmax attention does not depend on the order of its keys.
torch::Tensor attention_decode_step(const torch::Tensor& q, const torch::Tensor& k_cache, const torch::Tensor& v_cache,
                                    int64_t n_valid, double scale);

// Average number of keys a query sees over positions 1..context (FLOP counting):
// full causal (window <= 0): (context + 1) / 2; sliding window W: sum_i min(i, W) / context.
double mean_visible_keys(int64_t context, int64_t window);

}  // namespace samba
