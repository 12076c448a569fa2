#pragma once
// The CUDA SwiGLU activation, torch-free (see common/cuda_types.h). Every buffer is n
// contiguous elements of one type.
#include <cstdint>

#include "../common/cuda_types.h"

namespace samba::kernels::cuda {

// y = silu(gate) * up.
Status swiglu_forward(ElemType type, int64_t n, const void* gate, const void* up, void* y, void* stream);
// grad_gate = grad * up * s * (1 + gate * (1 - s)), grad_up = grad * gate * s, s = sigmoid(gate).
Status swiglu_backward(ElemType type, int64_t n, const void* grad, const void* gate, const void* up, void* grad_gate,
                       void* grad_up, void* stream);

}  // namespace samba::kernels::cuda
