#pragma once
// Fixed-order sums of per-block partial buffers, shared by the kernels whose backward
// accumulates parameter gradients per block (selective scan, causal conv1d, RMSNorm): the
// deterministic replacement for atomics.
#include <cstdint>

#include "cuda_types.h"

namespace samba::kernels::cuda {

// out[i] = sum over s < slices of part[s * inner + i]. The order depends only on `slices`:
// 32 groups (slice s in group s % 32) each summed in slice order, then the groups in order.
// `stream` is a cudaStream_t.
Status sum_slices(const float* part, int slices, int64_t inner, float* out, void* stream);

}  // namespace samba::kernels::cuda
