#pragma once
// Torch glue of the CUDA softmax cross-entropy (xent.cu), for the chunked LM head in
// fused.cpp. Not public: the in-place contract only suits a caller that owns the logits.
#include <torch/torch.h>

namespace samba::kernels {

// True when the kernel takes logits of this dtype on this device (CUDA, fp32 or bf16) and the
// build has the CUDA kernels.
bool softmax_xent_cuda_supports(torch::Device device, torch::ScalarType dtype);

// logits (rows, V) contiguous becomes d(sum of row losses)/d logits = softmax - one_hot(target) (zero on
// rows whose target is ignore_index), in its own dtype; row_loss (rows) fp32 receives
// logsumexp - logit[target] (0 on ignored rows). targets (rows) int64 on the same device.
void softmax_xent_inplace_cuda(const torch::Tensor& logits, const torch::Tensor& targets, int64_t ignore_index,
                               const torch::Tensor& row_loss);

}  // namespace samba::kernels
