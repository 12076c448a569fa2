// Depthwise causal conv1d with optional SiLU on CUDA. One thread walks one channel through a
// chunk of time with the last K inputs in registers, so each input is read once per chunk
// (plus K-1 for the warm-up); the warp's lanes are adjacent channels, coalesced in the
// channel-fast layout the Mamba layer produces.
//
// Backward walks the chunk backwards, recomputing the pre-activation for SiLU' from the
// inputs, and accumulates dW and d bias per (batch, chunk) slot; a second kernel sums the
// slots in order (deterministic, no atomics).
#include <algorithm>

#include "../common/cuda_util.cuh"
#include "conv_cuda.h"

namespace samba::kernels::cuda {
namespace {

constexpr int kConvThreads = 128;
constexpr int kConvChunk = 256;

template <typename T>
__device__ __forceinline__ float conv_input(const ConvArgs& a, int b, int c, int t) {
  if (t >= 0) return load<T>(a.x, b, c, t);
  if (a.initial_state) return a.initial_state[(static_cast<int64_t>(b) * a.C + c) * (a.K - 1) + (a.K - 1 + t)];
  return 0.f;
}

template <typename T, int K>
__global__ void __launch_bounds__(kConvThreads) conv_fwd_kernel(ConvArgs a, MutView3 y) {
  const int c = blockIdx.x * kConvThreads + threadIdx.x;
  const int t0 = blockIdx.y * kConvChunk, b = blockIdx.z;
  if (c >= a.C) return;
  float w[K], win[K];
#pragma unroll
  for (int k = 0; k < K; ++k) w[k] = a.weight[c * K + k];
  const float bias = a.bias ? a.bias[c] : 0.f;
#pragma unroll
  for (int k = 0; k < K - 1; ++k) win[k] = conv_input<T>(a, b, c, t0 - (K - 1) + k);
  const int t_end = min(a.L, t0 + kConvChunk);
  for (int t = t0; t < t_end; ++t) {
    win[K - 1] = load<T>(a.x, b, c, t);
    float acc = bias;
#pragma unroll
    for (int k = 0; k < K; ++k) acc += w[k] * win[k];
    if (a.silu) acc *= sigmoid(acc);
    store<T>(y, b, c, t, acc);
#pragma unroll
    for (int k = 0; k < K - 1; ++k) win[k] = win[k + 1];
  }
}

template <typename T, int K>
__global__ void __launch_bounds__(kConvThreads) conv_bwd_kernel(ConvArgs a, View3 gy, MutView3 gx, float* part_w,
                                                                float* part_b) {
  const int c = blockIdx.x * kConvThreads + threadIdx.x;
  const int chunk = blockIdx.y, t0 = chunk * kConvChunk, b = blockIdx.z;
  if (c >= a.C) return;
  float w[K];
#pragma unroll
  for (int k = 0; k < K; ++k) w[k] = a.weight[c * K + k];
  const float bias = a.bias ? a.bias[c] : 0.f;
  const int t_end = min(a.L, t0 + kConvChunk);
  // xs[k] = x[t - K + 1 + k] (the inputs of output t); gp[k] = dLoss/d pre[t + k].
  float xs[K], gp[K];
  auto grad_pre = [&](int t, const float* xw) {
    if (t >= a.L) return 0.f;
    float pre = bias;
#pragma unroll
    for (int k = 0; k < K; ++k) pre += w[k] * xw[k];
    float g = load<T>(gy, b, c, t);
    if (a.silu) {
      const float sg = sigmoid(pre);
      g *= sg * (1.f + pre * (1.f - sg));
    }
    return g;
  };
  // Warm-up: the pre-activations of t_end .. t_end + K - 2 (outside the chunk, needed by dx),
  // from xw[i] = x[t_end - K + i].
  {
    float xw[2 * K - 1];
#pragma unroll
    for (int i = 0; i < 2 * K - 1; ++i) {
      const int t = t_end - K + i;
      xw[i] = t < a.L ? conv_input<T>(a, b, c, t) : 0.f;
    }
#pragma unroll
    for (int k = 1; k < K; ++k) gp[k] = grad_pre(t_end + k - 1, xw + k);
#pragma unroll
    for (int k = 0; k < K; ++k) xs[k] = xw[k];  // the inputs of output t_end - 1
  }
  float gw[K], gb = 0.f;
#pragma unroll
  for (int k = 0; k < K; ++k) gw[k] = 0.f;
  for (int t = t_end - 1; t >= t0; --t) {
    gp[0] = grad_pre(t, xs);
    gb += gp[0];
    float gxt = 0.f;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      gw[k] += gp[0] * xs[k];
      gxt += w[K - 1 - k] * gp[k];  // x[t] feeds output t + k through tap K - 1 - k
    }
    store<T>(gx, b, c, t, gxt);
#pragma unroll
    for (int k = K - 1; k > 0; --k) {
      gp[k] = gp[k - 1];
      xs[k] = xs[k - 1];
    }
    xs[0] = conv_input<T>(a, b, c, t - K);
  }
  const int64_t slot = static_cast<int64_t>(b) * gridDim.y + chunk;
#pragma unroll
  for (int k = 0; k < K; ++k) part_w[(slot * a.C + c) * K + k] = gw[k];
  if (part_b) part_b[slot * a.C + c] = gb;
}

__global__ void conv_sum_slices(const float* part, int slices, int64_t inner, float* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < inner;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float s = 0.f;
    for (int g = 0; g < slices; ++g) s += part[g * inner + i];
    out[i] = s;
  }
}

int num_conv_chunks(int L) { return (L + kConvChunk - 1) / kConvChunk; }

dim3 conv_grid(const ConvArgs& a) {
  return dim3((a.C + kConvThreads - 1) / kConvThreads, num_conv_chunks(a.L), a.batch);
}

template <typename T>
Status launch_fwd(const ConvArgs& a, MutView3 y, cudaStream_t s) {
  switch (a.K) {
    case 2: conv_fwd_kernel<T, 2><<<conv_grid(a), kConvThreads, 0, s>>>(a, y); break;
    case 3: conv_fwd_kernel<T, 3><<<conv_grid(a), kConvThreads, 0, s>>>(a, y); break;
    default: conv_fwd_kernel<T, 4><<<conv_grid(a), kConvThreads, 0, s>>>(a, y); break;
  }
  return launch_status();
}

template <typename T>
Status launch_bwd(const ConvArgs& a, View3 gy, MutView3 gx, float* part_w, float* part_b, cudaStream_t s) {
  switch (a.K) {
    case 2: conv_bwd_kernel<T, 2><<<conv_grid(a), kConvThreads, 0, s>>>(a, gy, gx, part_w, part_b); break;
    case 3: conv_bwd_kernel<T, 3><<<conv_grid(a), kConvThreads, 0, s>>>(a, gy, gx, part_w, part_b); break;
    default: conv_bwd_kernel<T, 4><<<conv_grid(a), kConvThreads, 0, s>>>(a, gy, gx, part_w, part_b); break;
  }
  return launch_status();
}

Status check_conv(const ConvArgs& a) {
  if (a.K < 2 || a.K > kConvMaxWidth) return "causal_conv1d (CUDA): kernel width must be 2..4";
  if (a.batch < 1 || a.C < 1 || a.L < 1) return "causal_conv1d (CUDA): empty shape";
  if (a.batch > 65535 || num_conv_chunks(a.L) > 65535) return "causal_conv1d (CUDA): batch or length too large";
  return nullptr;
}

}  // namespace

Status causal_conv1d_forward(const ConvArgs& a, MutView3 y, void* stream) {
  if (Status s = check_conv(a)) return s;
  auto st = static_cast<cudaStream_t>(stream);
  return a.type == ElemType::kBFloat16 ? launch_fwd<__nv_bfloat16>(a, y, st) : launch_fwd<float>(a, y, st);
}

size_t causal_conv1d_backward_workspace(const ConvArgs& a) {
  const size_t slots = static_cast<size_t>(a.batch) * num_conv_chunks(a.L);
  return slots * a.C * (a.K + 1);
}

Status causal_conv1d_backward(const ConvArgs& a, View3 grad_y, MutView3 grad_x, float* grad_weight, float* grad_bias,
                              float* workspace, void* stream) {
  if (Status s = check_conv(a)) return s;
  auto st = static_cast<cudaStream_t>(stream);
  const int slots = a.batch * num_conv_chunks(a.L);
  float* part_w = workspace;
  float* part_b = grad_bias ? workspace + static_cast<int64_t>(slots) * a.C * a.K : nullptr;
  Status s = a.type == ElemType::kBFloat16 ? launch_bwd<__nv_bfloat16>(a, grad_y, grad_x, part_w, part_b, st)
                                           : launch_bwd<float>(a, grad_y, grad_x, part_w, part_b, st);
  if (s) return s;
  const int64_t nw = static_cast<int64_t>(a.C) * a.K;
  conv_sum_slices<<<static_cast<int>(std::min<int64_t>((nw + 255) / 256, 1024)), 256, 0, st>>>(part_w, slots, nw,
                                                                                                grad_weight);
  if (part_b)
    conv_sum_slices<<<static_cast<int>(std::min<int64_t>((a.C + 255) / 256, 1024)), 256, 0, st>>>(part_b, slots, a.C,
                                                                                                   grad_bias);
  return launch_status();
}

}  // namespace samba::kernels::cuda
