#pragma once
// The CUDA softmax cross-entropy of one chunk of LM-head logits, torch-free (see
// common/cuda_types.h). The gradient overwrites the logits: the chunked LM head only needs the
// logits to form it, and writing in place spares a second (rows x vocab) buffer.
#include <cstdint>

#include "../common/cuda_types.h"

namespace samba::kernels::cuda {

struct XentArgs {
  int64_t rows = 0;
  int64_t vocab = 0;
  int64_t ignore_index = -1;
  ElemType type = ElemType::kFloat32;
  void* logits = nullptr;              // (rows, vocab) row-major; becomes the gradient
  const int64_t* targets = nullptr;    // (rows)
};

// Per row: row_loss = logsumexp(row) - row[target] (fp32), and the row becomes
// softmax(row) - one_hot(target) in the logits' type: d(sum of row losses)/d logits. A row whose
// target is ignore_index gets loss 0 and a zero gradient; a target outside [0, vocab) that is
// not ignore_index gives a NaN loss (torch would raise; a kernel cannot without a host sync)
// and a gradient without the one-hot. Deterministic: fixed-order reductions, no atomics.
Status softmax_xent_inplace(const XentArgs& a, float* row_loss, void* stream);

}  // namespace samba::kernels::cuda
