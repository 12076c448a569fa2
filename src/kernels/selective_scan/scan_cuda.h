#pragma once
// The CUDA selective scan, torch-free (see common/cuda_types.h). Shapes and the recurrence
// are those of include/samba/kernels/selective_scan.h; the glue (cuda.cpp) converts A, D and
// delta_bias to contiguous fp32 and allocates outputs and the workspace.
#include <cstddef>

#include "../common/cuda_types.h"

namespace samba::kernels::cuda {

// States are saved every kScanChunk steps (backward restarts each chunk from them).
// SAMBA_SCAN_CHUNK / SAMBA_SCAN_BWD_SUB (compile definitions) exist for measuring variants.
#ifndef SAMBA_SCAN_CHUNK
#define SAMBA_SCAN_CHUNK 32
#endif
constexpr int kScanChunk = SAMBA_SCAN_CHUNK;
// Largest state size the kernels handle (states are spread over up to 32 lanes).
constexpr int kScanMaxState = 128;

struct ScanArgs {
  int batch = 0, E = 0, N = 0, L = 0;
  bool softplus = false;
  ElemType type = ElemType::kFloat32;  // of u, delta, z, B, C, the output and grad_out
  View3 u, delta, z, B, C;             // z.data may be null; B, C are (batch, N, L)
  const float* A = nullptr;            // (E, N) contiguous
  const float* D = nullptr;            // (E) or null
  const float* bias = nullptr;         // (E) or null
};

// out (batch, E, L) in `type` (out.data may be null: states only); last_state (batch, E, N)
// fp32 or null; chunk_states (batch, E, ceil(L / kScanChunk), N) fp32 or null: the state
// before each chunk's first step.
Status selective_scan_forward(const ScanArgs& a, MutView3 out, float* last_state, float* chunk_states, void* stream);

struct ScanGrads {
  MutView3 u, delta, z;  // in `type`; z.data null when there is no z
  float* A = nullptr;    // (E, N)
  float* B = nullptr;    // (batch, L, N): note the layout, the glue returns a transposed view
  float* C = nullptr;    // (batch, L, N)
  float* D = nullptr;    // (E) or null
  float* bias = nullptr; // (E) or null
};

// fp32 scratch the backward needs, in floats; with states_given, the caller passes the chunk
// states the forward saved and the workspace leaves them out.
size_t selective_scan_backward_workspace(const ScanArgs& a, bool states_given);

// chunk_states: what the forward wrote (training saves them: (batch, E, ceil(L / kScanChunk),
// N) fp32, half the size of a bf16 u), or null: the backward then recomputes them first with a
// states-only forward into the workspace.
// Deterministic: every sum is taken in a fixed order (per-block partial buffers reduced by a
// second kernel), no atomics.
Status selective_scan_backward(const ScanArgs& a, View3 grad_out, const ScanGrads& g, const float* chunk_states,
                               float* workspace, void* stream);

}  // namespace samba::kernels::cuda
