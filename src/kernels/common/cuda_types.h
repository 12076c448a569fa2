#pragma once
// Types shared by the raw CUDA kernels (src/kernels/*/*.cu) and their torch glue. Free of
// torch and of CUDA headers, so that the kernels compile with nvcc alone (CI's sm_90
// compile-only target on the CPU machine) and the glue compiles with the host compiler.
#include <cstdint>

namespace samba::kernels::cuda {

// Element type of the activations a kernel reads and writes. Parameters (A, D, biases,
// conv weights) and states are always fp32: the glue converts them.
enum class ElemType : int { kFloat32 = 0, kBFloat16 = 1 };

// A strided (batch, rows, time) view, strides in elements. Kernels read any layout with a
// unit stride in rows or time (the Mamba layer passes transposed views of matmul outputs,
// so this avoids a copy per tensor); they pick the coalesced traversal order per view.
struct View3 {
  const void* data = nullptr;
  int64_t s_batch = 0, s_row = 0, s_time = 0;
};
struct MutView3 {
  void* data = nullptr;
  int64_t s_batch = 0, s_row = 0, s_time = 0;
};

// Kernels return nullptr on success or a static error string (CUDA's message); the glue
// turns it into a samba::Error.
using Status = const char*;

}  // namespace samba::kernels::cuda
