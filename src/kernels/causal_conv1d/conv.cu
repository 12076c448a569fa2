// Depthwise causal conv1d with optional SiLU on CUDA. One thread walks one channel through a
// chunk of time with the last K inputs in registers, so each input is read once per chunk
// (plus K-1 for the warm-up); the warp's lanes are adjacent channels, coalesced in the
// channel-fast layout the Mamba layer produces.
//
// Backward walks the chunk backwards, recomputing the pre-activation for SiLU' from the
// inputs, and accumulates dW and d bias per (batch, chunk) slot; a second kernel sums the
// slots in order (deterministic, no atomics).
//
// The channel-contiguous layouts (the Mamba layer's) take a second version (namespace vec):
// four adjacent channels per thread, one 8-byte (bf16) or 16-byte (fp32) access per step, and
// the loads of kBatch steps issued before their arithmetic. The first version has one 2-byte
// load in flight per thread (a store to y may alias the next load), which left it at a third
// of the memory bandwidth. Both versions do the same arithmetic in the same order.
#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "../common/cuda_util.cuh"
#include "../common/reduce_cuda.h"
#include "conv_cuda.h"

namespace samba::kernels::cuda {
namespace {

constexpr int kConvThreads = 128;
constexpr int kConvChunk = 128;  // steps per block (and per dW partial slot)

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

namespace vec {

constexpr int kCh = 4;     // adjacent channels per thread (load4 / store4)
constexpr int kBatch = 4;  // steps whose loads are issued together

// The inputs of channels cv .. cv + 3 at step t: x, the initial state before 0, zero past L.
template <typename T>
__device__ __forceinline__ void load_x(const ConvArgs& a, const T* xb, int b, int cv, int t, float (&v)[kCh]) {
  if (t >= 0 && t < a.L) {
    load4(xb + t * a.x.s_time, v);
  } else {
#pragma unroll
    for (int j = 0; j < kCh; ++j)
      v[j] = (t < 0 && a.initial_state)
                 ? a.initial_state[(static_cast<int64_t>(b) * a.C + cv + j) * (a.K - 1) + (a.K - 1 + t)]
                 : 0.f;
  }
}

template <typename T, int K>
__global__ void __launch_bounds__(kConvThreads) conv_fwd_kernel(ConvArgs a, MutView3 y) {
  const int cv = (blockIdx.x * kConvThreads + threadIdx.x) * kCh;
  const int t0 = blockIdx.y * kConvChunk, b = blockIdx.z;
  if (cv >= a.C) return;
  const T* xb = static_cast<const T*>(a.x.data) + b * a.x.s_batch + cv;
  T* yb = static_cast<T*>(y.data) + b * y.s_batch + cv;
  float w[K][kCh], bias[kCh], win[K][kCh];  // win[k]: the input of tap k
#pragma unroll
  for (int j = 0; j < kCh; ++j) {
    bias[j] = a.bias ? a.bias[cv + j] : 0.f;
#pragma unroll
    for (int k = 0; k < K; ++k) w[k][j] = a.weight[(cv + j) * K + k];
  }
#pragma unroll
  for (int k = 0; k < K - 1; ++k) load_x(a, xb, b, cv, t0 - (K - 1) + k, win[k]);
  auto step = [&](int t, const float (&xt)[kCh]) {
    float out[kCh];
#pragma unroll
    for (int j = 0; j < kCh; ++j) {
      win[K - 1][j] = xt[j];
      float acc = bias[j];
#pragma unroll
      for (int k = 0; k < K; ++k) acc += w[k][j] * win[k][j];
      if (a.silu) acc *= sigmoid(acc);
      out[j] = acc;
#pragma unroll
      for (int k = 0; k < K - 1; ++k) win[k][j] = win[k + 1][j];
    }
    store4(yb + t * y.s_time, out);
  };
  const int t_end = min(a.L, t0 + kConvChunk);
  int t = t0;
  for (; t + kBatch <= t_end; t += kBatch) {
    float xin[kBatch][kCh];
#pragma unroll
    for (int i = 0; i < kBatch; ++i) load4(xb + (t + i) * a.x.s_time, xin[i]);
#pragma unroll
    for (int i = 0; i < kBatch; ++i) step(t + i, xin[i]);
  }
  for (; t < t_end; ++t) {
    float xt[kCh];
    load4(xb + t * a.x.s_time, xt);
    step(t, xt);
  }
}

template <typename T, int K>
__global__ void __launch_bounds__(kConvThreads) conv_bwd_kernel(ConvArgs a, View3 gy, MutView3 gx, float* part_w,
                                                                float* part_b) {
  const int cv = (blockIdx.x * kConvThreads + threadIdx.x) * kCh;
  const int chunk = blockIdx.y, t0 = chunk * kConvChunk, b = blockIdx.z;
  if (cv >= a.C) return;
  const T* xb = static_cast<const T*>(a.x.data) + b * a.x.s_batch + cv;
  const T* gb_in = static_cast<const T*>(gy.data) + b * gy.s_batch + cv;
  T* gxb = static_cast<T*>(gx.data) + b * gx.s_batch + cv;
  float w[K][kCh], bias[kCh];
#pragma unroll
  for (int j = 0; j < kCh; ++j) {
    bias[j] = a.bias ? a.bias[cv + j] : 0.f;
#pragma unroll
    for (int k = 0; k < K; ++k) w[k][j] = a.weight[(cv + j) * K + k];
  }
  // dLoss/d pre of one channel at a step from its tap inputs xw[k] and dLoss/dy g.
  auto grad_pre = [&](int j, float g, const float (&xw)[2 * K - 1][kCh], int off) {
    float pre = bias[j];
#pragma unroll
    for (int k = 0; k < K; ++k) pre += w[k][j] * xw[off + k][j];
    if (a.silu) {
      const float sg = sigmoid(pre);
      g *= sg * (1.f + pre * (1.f - sg));
    }
    return g;
  };
  const int t_end = min(a.L, t0 + kConvChunk);
  // xs[k] = x[t - K + 1 + k] (the inputs of output t); gp[k] = dLoss/d pre[t + k].
  float xs[2 * K - 1][kCh], gp[K][kCh];
  {
    // Warm-up: the pre-activations of t_end .. t_end + K - 2 (outside the chunk, needed by dx),
    // from xs[i] = x[t_end - K + i]; the first K of them are then the inputs of output t_end - 1.
#pragma unroll
    for (int i = 0; i < 2 * K - 1; ++i) load_x(a, xb, b, cv, t_end - K + i, xs[i]);
#pragma unroll
    for (int k = 1; k < K; ++k) {
      const int t = t_end + k - 1;
      float g[kCh] = {};
      if (t < a.L) load4(gb_in + t * gy.s_time, g);
#pragma unroll
      for (int j = 0; j < kCh; ++j) gp[k][j] = t < a.L ? grad_pre(j, g[j], xs, k) : 0.f;
    }
  }
  float gw[K][kCh], gbs[kCh];
#pragma unroll
  for (int j = 0; j < kCh; ++j) {
    gbs[j] = 0.f;
#pragma unroll
    for (int k = 0; k < K; ++k) gw[k][j] = 0.f;
  }
  // One step: g = dLoss/dy[t], xp = x[t - K] (the window's next input going backwards).
  auto step = [&](int t, const float (&g)[kCh], const float (&xp)[kCh]) {
    float gxt[kCh];
#pragma unroll
    for (int j = 0; j < kCh; ++j) {
      gp[0][j] = grad_pre(j, g[j], xs, 0);
      gbs[j] += gp[0][j];
      gxt[j] = 0.f;
#pragma unroll
      for (int k = 0; k < K; ++k) {
        gw[k][j] += gp[0][j] * xs[k][j];
        gxt[j] += w[K - 1 - k][j] * gp[k][j];  // x[t] feeds output t + k through tap K - 1 - k
      }
#pragma unroll
      for (int k = K - 1; k > 0; --k) {
        gp[k][j] = gp[k - 1][j];
        xs[k][j] = xs[k - 1][j];
      }
      xs[0][j] = xp[j];
    }
    store4(gxb + t * gx.s_time, gxt);
  };
  int t = t_end - 1;
  for (int r = (t_end - t0) % kBatch; r > 0; --r, --t) {
    float g[kCh], xp[kCh];
    load4(gb_in + t * gy.s_time, g);
    load_x(a, xb, b, cv, t - K, xp);
    step(t, g, xp);
  }
  for (; t >= t0; t -= kBatch) {
    float g[kBatch][kCh], xp[kBatch][kCh];
#pragma unroll
    for (int i = 0; i < kBatch; ++i) {
      load4(gb_in + (t - i) * gy.s_time, g[i]);
      load_x(a, xb, b, cv, t - i - K, xp[i]);
    }
#pragma unroll
    for (int i = 0; i < kBatch; ++i) step(t - i, g[i], xp[i]);
  }
  const int64_t slot = static_cast<int64_t>(b) * gridDim.y + chunk;
#pragma unroll
  for (int j = 0; j < kCh; ++j) {
#pragma unroll
    for (int k = 0; k < K; ++k) part_w[(slot * a.C + cv + j) * K + k] = gw[k][j];
    if (part_b) part_b[slot * a.C + cv + j] = gbs[j];
  }
}

// Whether a view is channel-contiguous with whole, aligned 4-channel vectors at every
// (batch, step).
template <typename T>
bool view_ok(const void* p, int64_t s_batch, int64_t s_row, int64_t s_time) {
  constexpr int64_t bytes = kCh * sizeof(T);
  return p != nullptr && s_row == 1 && reinterpret_cast<uintptr_t>(p) % bytes == 0 &&
         (s_batch * static_cast<int64_t>(sizeof(T))) % bytes == 0 && (s_time * static_cast<int64_t>(sizeof(T))) % bytes == 0;
}

// SAMBA_CONV_VECTOR=0 keeps the first version for every layout (for measuring).
bool enabled() {
  static const bool on = [] {
    const char* v = std::getenv("SAMBA_CONV_VECTOR");
    return v == nullptr || std::atoi(v) != 0;
  }();
  return on;
}

template <typename T>
bool eligible(const ConvArgs& a, const void* p1, int64_t b1, int64_t r1, int64_t t1) {
  return enabled() && a.C % kCh == 0 && view_ok<T>(a.x.data, a.x.s_batch, a.x.s_row, a.x.s_time) &&
         view_ok<T>(p1, b1, r1, t1);
}

}  // namespace vec

int num_conv_chunks(int L) { return (L + kConvChunk - 1) / kConvChunk; }

dim3 conv_grid(const ConvArgs& a) {
  return dim3((a.C + kConvThreads - 1) / kConvThreads, num_conv_chunks(a.L), a.batch);
}

dim3 vec_grid(const ConvArgs& a) {
  const int threads = a.C / vec::kCh;
  return dim3((threads + kConvThreads - 1) / kConvThreads, num_conv_chunks(a.L), a.batch);
}

template <typename T>
Status launch_fwd(const ConvArgs& a, MutView3 y, cudaStream_t s) {
  if (vec::eligible<T>(a, y.data, y.s_batch, y.s_row, y.s_time)) {
    switch (a.K) {
      case 2: vec::conv_fwd_kernel<T, 2><<<vec_grid(a), kConvThreads, 0, s>>>(a, y); break;
      case 3: vec::conv_fwd_kernel<T, 3><<<vec_grid(a), kConvThreads, 0, s>>>(a, y); break;
      default: vec::conv_fwd_kernel<T, 4><<<vec_grid(a), kConvThreads, 0, s>>>(a, y); break;
    }
    return launch_status();
  }
  switch (a.K) {
    case 2: conv_fwd_kernel<T, 2><<<conv_grid(a), kConvThreads, 0, s>>>(a, y); break;
    case 3: conv_fwd_kernel<T, 3><<<conv_grid(a), kConvThreads, 0, s>>>(a, y); break;
    default: conv_fwd_kernel<T, 4><<<conv_grid(a), kConvThreads, 0, s>>>(a, y); break;
  }
  return launch_status();
}

template <typename T>
Status launch_bwd(const ConvArgs& a, View3 gy, MutView3 gx, float* part_w, float* part_b, cudaStream_t s) {
  if (vec::eligible<T>(a, gy.data, gy.s_batch, gy.s_row, gy.s_time) &&
      vec::view_ok<T>(gx.data, gx.s_batch, gx.s_row, gx.s_time)) {
    const dim3 grid = vec_grid(a);
    switch (a.K) {
      case 2: vec::conv_bwd_kernel<T, 2><<<grid, kConvThreads, 0, s>>>(a, gy, gx, part_w, part_b); break;
      case 3: vec::conv_bwd_kernel<T, 3><<<grid, kConvThreads, 0, s>>>(a, gy, gx, part_w, part_b); break;
      default: vec::conv_bwd_kernel<T, 4><<<grid, kConvThreads, 0, s>>>(a, gy, gx, part_w, part_b); break;
    }
    return launch_status();
  }
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
  if (Status s2 = sum_slices(part_w, slots, static_cast<int64_t>(a.C) * a.K, grad_weight, st)) return s2;
  return part_b ? sum_slices(part_b, slots, a.C, grad_bias, st) : nullptr;
}

}  // namespace samba::kernels::cuda
