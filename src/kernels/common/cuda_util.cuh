#pragma once
// Device helpers for the raw kernels (nvcc only, no torch).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "cuda_types.h"

namespace samba::kernels::cuda {

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// Four consecutive elements as floats and back: one 8-byte (bf16) or 16-byte (fp32) access,
// so p must be aligned to 4 elements.
__device__ __forceinline__ void load4(const __nv_bfloat16* p, float (&x)[4]) {
  const uint2 v = *reinterpret_cast<const uint2*>(p);
  const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&v.x));
  const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&v.y));
  x[0] = lo.x, x[1] = lo.y, x[2] = hi.x, x[3] = hi.y;
}
__device__ __forceinline__ void load4(const float* p, float (&x)[4]) {
  const float4 v = *reinterpret_cast<const float4*>(p);
  x[0] = v.x, x[1] = v.y, x[2] = v.z, x[3] = v.w;
}
__device__ __forceinline__ void store4(__nv_bfloat16* p, const float (&x)[4]) {
  uint2 v;
  *reinterpret_cast<__nv_bfloat162*>(&v.x) = __floats2bfloat162_rn(x[0], x[1]);
  *reinterpret_cast<__nv_bfloat162*>(&v.y) = __floats2bfloat162_rn(x[2], x[3]);
  *reinterpret_cast<uint2*>(p) = v;
}
__device__ __forceinline__ void store4(float* p, const float (&x)[4]) {
  *reinterpret_cast<float4*>(p) = make_float4(x[0], x[1], x[2], x[3]);
}

template <typename T>
__device__ __forceinline__ float load(const View3& v, int64_t b, int64_t r, int64_t t) {
  return to_float(static_cast<const T*>(v.data)[b * v.s_batch + r * v.s_row + t * v.s_time]);
}
template <typename T>
__device__ __forceinline__ void store(const MutView3& v, int64_t b, int64_t r, int64_t t, float x) {
  static_cast<T*>(v.data)[b * v.s_batch + r * v.s_row + t * v.s_time] = from_float<T>(x);
}

// A thread's walk over a (rows x cols) tile: elements threadIdx.x, + blockDim.x, ...,
// the fastest-moving index along the dimension whose stride is 1 (so a warp touches
// consecutive addresses). The coordinates advance incrementally: no division per element.
struct TileWalk {
  int n, rows, cols, i, r, c, dr, dc;
  bool time_fast;
  __device__ __forceinline__ TileWalk(int rows_, int cols_, bool time_fast_) : rows(rows_), cols(cols_), time_fast(time_fast_) {
    n = rows * cols;
    i = threadIdx.x;
    const int fast = time_fast ? cols : rows;
    const int slow_of_i = i / fast, fast_of_i = i % fast;
    const int slow_step = blockDim.x / fast, fast_step = blockDim.x % fast;
    if (time_fast) {
      r = slow_of_i, c = fast_of_i, dr = slow_step, dc = fast_step;
    } else {
      c = slow_of_i, r = fast_of_i, dc = slow_step, dr = fast_step;
    }
  }
  __device__ __forceinline__ bool valid() const { return i < n; }
  __device__ __forceinline__ void next() {
    i += blockDim.x;
    r += dr;
    c += dc;
    if (time_fast) {
      if (c >= cols) c -= cols, ++r;
    } else {
      if (r >= rows) r -= rows, ++c;
    }
  }
};

// f(r, c) for every element of the tile this thread owns.
template <typename F>
__device__ __forceinline__ void for_tile(int rows, int cols, bool time_fast, F&& f) {
  for (TileWalk w(rows, cols, time_fast); w.valid(); w.next()) f(w.r, w.c);
}

// The same walk for tiles read from global memory, in rounds of kGatherBatch elements: a
// round issues its loads together (into registers) before consuming them, so they are in
// flight at once instead of one latency each. The code stays small on purpose: an earlier
// fully unrolled version ran slower, which points at the instruction cache.
// `load(r, c)` returns a float, `use(r, c, value)` consumes it.
template <int kGatherBatch, typename Load, typename Use>
__device__ __forceinline__ void gather_tile(int rows, int cols, bool time_fast, Load&& load, Use&& use) {
  TileWalk w(rows, cols, time_fast);
  while (w.valid()) {
    float v[kGatherBatch];
    int rr[kGatherBatch], cc[kGatherBatch];
    TileWalk first = w;
#pragma unroll
    for (int k = 0; k < kGatherBatch; ++k) {
      rr[k] = w.r;
      cc[k] = w.c;
      if (w.valid()) v[k] = load(w.r, w.c);
      w.next();
    }
#pragma unroll
    for (int k = 0; k < kGatherBatch; ++k)
      if (first.i + k * static_cast<int>(blockDim.x) < first.n) use(rr[k], cc[k], v[k]);
  }
}
__host__ __device__ __forceinline__ bool time_fast(int64_t s_row, int64_t s_time) { return s_time == 1 || s_row != 1; }

// 2^x on the multi-function unit (one instruction; relative error ~2^-22, denormals flushed).
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// log(1 + e^x) with two multi-function-unit instructions: linear above 20 (as torch), a
// series where 1 + e^x would round e^x away (relative error below ~2e-5: __logf's).
__device__ __forceinline__ float softplus(float x) {
  if (x > 20.f) return x;
  const float y = __expf(x);
  return x < -4.f ? y * (1.f - y * (0.5f - y * (1.f / 3.f))) : __logf(1.f + y);
}
// 1 - e^{-x} for x >= 0 (the sigmoid behind a softplus, from its output), no cancellation.
__device__ __forceinline__ float one_minus_exp_neg(float x) {
  return x < 0.01f ? x * (1.f - x * (0.5f - x * (1.f / 6.f))) : 1.f - __expf(-x);
}
__device__ __forceinline__ float sigmoid(float x) { return __fdividef(1.f, 1.f + __expf(-x)); }

// Sum over 2^k adjacent lanes (a channel's state group); every lane gets the total.
__device__ __forceinline__ float group_sum(float x, int group) {
  for (int o = 1; o < group; o <<= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

inline Status launch_status() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

}  // namespace samba::kernels::cuda
