// Fixed-order sums of partial buffers (reduce_cuda.h). A block owns 32 columns; its 32 rows
// of threads each sum every 32nd slice, so a column's loads are spread over 32 threads (a
// thread per column looping over hundreds of slices waited on one load at a time: ~0.1 ms for
// the RMSNorm weight gradient's 528 x 1536 partials).
#include "cuda_util.cuh"
#include "reduce_cuda.h"

namespace samba::kernels::cuda {
namespace {

constexpr int kCols = 32, kGroups = 32;

__global__ void __launch_bounds__(kCols * kGroups) sum_slices_kernel(const float* part, int slices, int64_t inner,
                                                                     float* out) {
  __shared__ float s[kGroups][kCols + 1];
  const int x = threadIdx.x % kCols, g = threadIdx.x / kCols;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kCols + x;
  float sum = 0.f;
  if (i < inner) {
#pragma unroll 4
    for (int sl = g; sl < slices; sl += kGroups) sum += part[static_cast<int64_t>(sl) * inner + i];
  }
  s[g][x] = sum;
  __syncthreads();
  if (g == 0 && i < inner) {
    float total = 0.f;
#pragma unroll
    for (int k = 0; k < kGroups; ++k) total += s[k][x];
    out[i] = total;
  }
}

}  // namespace

Status sum_slices(const float* part, int slices, int64_t inner, float* out, void* stream) {
  if (inner == 0) return nullptr;
  const int64_t blocks = (inner + kCols - 1) / kCols;
  if (blocks > 0x7fffffff) return "sum_slices (CUDA): too many columns";
  sum_slices_kernel<<<static_cast<unsigned>(blocks), kCols * kGroups, 0, static_cast<cudaStream_t>(stream)>>>(
      part, slices, inner, out);
  return launch_status();
}

}  // namespace samba::kernels::cuda
