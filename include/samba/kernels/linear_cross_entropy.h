#pragma once
// The LM head fused with its loss: mean cross-entropy of logits = hidden @ weight^T over the
// targets that are not `ignore_index`, computed `chunk` tokens at a time. Each chunk's
// logits (fp32) give its loss and, in the same pass, its gradients w.r.t. hidden and weight,
// which are kept for backward (scaled there by the incoming gradient), so the full
// (tokens x vocab) fp32 logits and their gradient never exist: at 32k tokens and a 32k vocab
// that is 4.2 GB each. Chunks run in a fixed order: deterministic.
//   hidden (..., d), weight (V, d), targets (...) int64. The logits matmul runs in hidden's
//   dtype (bf16 under autocast), softmax and the loss in fp32. No target: NaN (as torch).
#include <torch/torch.h>

#include "samba/kernels/common.h"

namespace samba::kernels {

// chunk <= 0 picks about 2^27 logits per chunk (512 MB fp32).
torch::Tensor linear_cross_entropy(const torch::Tensor& hidden, const torch::Tensor& weight,
                                   const torch::Tensor& targets, int64_t ignore_index = -1, int64_t chunk = 0);

// linear, then torch's cross_entropy (the oracle; also the path under use_reference_kernels()).
torch::Tensor linear_cross_entropy_reference(const torch::Tensor& hidden, const torch::Tensor& weight,
                                             const torch::Tensor& targets, int64_t ignore_index = -1);

}  // namespace samba::kernels
