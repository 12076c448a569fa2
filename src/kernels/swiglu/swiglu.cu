// SwiGLU on CUDA: elementwise, fp32 arithmetic, grid-stride loops over 16-byte packs when
// every buffer is 16-byte aligned (the tail, n mod the pack, element by element); otherwise
// element by element throughout. Memory-bound: precise expf costs nothing here.
#include <algorithm>
#include <initializer_list>

#include "../common/cuda_util.cuh"
#include "swiglu_cuda.h"

namespace samba::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 132 * 16;  // a few waves of an H200; the loops stride over the rest

template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

__device__ __forceinline__ float sigmoid_precise(float x) { return 1.f / (1.f + expf(-x)); }

// The per-element bodies on floats, shared by the pack and tail loops.
__device__ __forceinline__ float fwd_value(float g, float u) { return g * sigmoid_precise(g) * u; }
__device__ __forceinline__ void bwd_value(float dy, float g, float u, float& dg, float& du) {
  const float s = sigmoid_precise(g);
  du = dy * g * s;
  dg = dy * u * s * (1.f + g * (1.f - s));
}

template <typename T, int V>
__global__ void __launch_bounds__(kThreads) swiglu_fwd_kernel(int64_t n, const T* gate, const T* up, T* y) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t packs = n / V;
  using P = Pack<T, V>;
  for (int64_t i = first; i < packs; i += stride) {
    const P g = reinterpret_cast<const P*>(gate)[i], u = reinterpret_cast<const P*>(up)[i];
    P out;
#pragma unroll
    for (int k = 0; k < V; ++k) out.v[k] = from_float<T>(fwd_value(to_float(g.v[k]), to_float(u.v[k])));
    reinterpret_cast<P*>(y)[i] = out;
  }
  for (int64_t i = packs * V + first; i < n; i += stride)
    y[i] = from_float<T>(fwd_value(to_float(gate[i]), to_float(up[i])));
}

template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
    swiglu_bwd_kernel(int64_t n, const T* grad, const T* gate, const T* up, T* grad_gate, T* grad_up) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t packs = n / V;
  using P = Pack<T, V>;
  for (int64_t i = first; i < packs; i += stride) {
    const P dy = reinterpret_cast<const P*>(grad)[i], g = reinterpret_cast<const P*>(gate)[i],
            u = reinterpret_cast<const P*>(up)[i];
    P dg, du;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      float a, b;
      bwd_value(to_float(dy.v[k]), to_float(g.v[k]), to_float(u.v[k]), a, b);
      dg.v[k] = from_float<T>(a);
      du.v[k] = from_float<T>(b);
    }
    reinterpret_cast<P*>(grad_gate)[i] = dg;
    reinterpret_cast<P*>(grad_up)[i] = du;
  }
  for (int64_t i = packs * V + first; i < n; i += stride) {
    float a, b;
    bwd_value(to_float(grad[i]), to_float(gate[i]), to_float(up[i]), a, b);
    grad_gate[i] = from_float<T>(a);
    grad_up[i] = from_float<T>(b);
  }
}

bool all_aligned(std::initializer_list<const void*> ptrs) {
  return std::all_of(ptrs.begin(), ptrs.end(), [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; });
}

unsigned blocks_for(int64_t work) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(kMaxBlocks, (work + kThreads - 1) / kThreads)));
}

template <typename T>
Status fwd(int64_t n, const void* gate, const void* up, void* y, cudaStream_t s) {
  constexpr int kVec = 16 / sizeof(T);
  auto g = static_cast<const T*>(gate), u = static_cast<const T*>(up);
  auto out = static_cast<T*>(y);
  if (all_aligned({gate, up, y}))
    swiglu_fwd_kernel<T, kVec><<<blocks_for(n / kVec), kThreads, 0, s>>>(n, g, u, out);
  else
    swiglu_fwd_kernel<T, 1><<<blocks_for(n), kThreads, 0, s>>>(n, g, u, out);
  return launch_status();
}

template <typename T>
Status bwd(int64_t n, const void* grad, const void* gate, const void* up, void* grad_gate, void* grad_up,
           cudaStream_t s) {
  constexpr int kVec = 16 / sizeof(T);
  auto dy = static_cast<const T*>(grad), g = static_cast<const T*>(gate), u = static_cast<const T*>(up);
  auto dg = static_cast<T*>(grad_gate), du = static_cast<T*>(grad_up);
  if (all_aligned({grad, gate, up, grad_gate, grad_up}))
    swiglu_bwd_kernel<T, kVec><<<blocks_for(n / kVec), kThreads, 0, s>>>(n, dy, g, u, dg, du);
  else
    swiglu_bwd_kernel<T, 1><<<blocks_for(n), kThreads, 0, s>>>(n, dy, g, u, dg, du);
  return launch_status();
}

}  // namespace

Status swiglu_forward(ElemType type, int64_t n, const void* gate, const void* up, void* y, void* stream) {
  if (n <= 0) return nullptr;
  auto st = static_cast<cudaStream_t>(stream);
  return type == ElemType::kBFloat16 ? fwd<__nv_bfloat16>(n, gate, up, y, st) : fwd<float>(n, gate, up, y, st);
}

Status swiglu_backward(ElemType type, int64_t n, const void* grad, const void* gate, const void* up, void* grad_gate,
                       void* grad_up, void* stream) {
  if (n <= 0) return nullptr;
  auto st = static_cast<cudaStream_t>(stream);
  return type == ElemType::kBFloat16 ? bwd<__nv_bfloat16>(n, grad, gate, up, grad_gate, grad_up, st)
                                     : bwd<float>(n, grad, gate, up, grad_gate, grad_up, st);
}

}  // namespace samba::kernels::cuda
