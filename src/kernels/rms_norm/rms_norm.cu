// RMSNorm + residual add on CUDA. Forward: one block per row; the sum of squares is reduced
// in a fixed order (warp tree, then the warps' sums in order), so results are reproducible.
// Backward: blocks own fixed runs of rows and accumulate the weight gradient of their rows
// (each column always by the same thread, in registers or shared memory); a second kernel
// sums the blocks' partials in order. No atomics. Rows up to 16 x 256 wide stay in registers
// between a kernel's two passes over them.
//
// Rows of up to 2048 (a multiple of 4, 16-byte aligned) take a second forward and backward with
// one warp per row: no block barrier per row, 4-element vector accesses, and three to four
// times the rows in flight per SM (the block-per-row backward keeps 4 rows per SM in flight and
// reached ~55% of the bandwidth).
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <mutex>
#include <vector>

#include "../common/cuda_util.cuh"
#include "../common/reduce_cuda.h"
#include "rms_norm_cuda.h"

namespace samba::kernels::cuda {
namespace {

constexpr int kNormThreads = 256;
constexpr int kMaxBwdBlocks = 1024;  // one wave of 256-thread blocks on an H100 / H200

// Sum over the block, the same value in every thread; `sh` holds >= 32 floats.
__device__ float block_sum(float v, float* sh) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = (blockDim.x + 31) / 32;
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  float total = 0.f;
  for (int w = 0; w < warps; ++w) total += sh[w];
  __syncthreads();  // sh is reused by the next call
  return total;
}

// kPer > 0: the row fits kPer elements per thread and stays in registers between the passes
// (one read of the inputs); kPer == 0: any width, the second pass re-reads.
template <typename TX, typename TY, int kPer>
__global__ void __launch_bounds__(kNormThreads) rms_fwd_kernel(RmsNormArgs a, float* rout, TY* y, float* rstd) {
  __shared__ float sh[32];
  const int64_t base = static_cast<int64_t>(blockIdx.x) * a.d;
  const TX* x = static_cast<const TX*>(a.x) + base;
  float ss = 0.f;
  if constexpr (kPer > 0) {
    float r[kPer];
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      const int i = threadIdx.x + k * kNormThreads;
      r[k] = i < a.d ? to_float(x[i]) + (a.residual ? a.residual[base + i] : 0.f) : 0.f;
      if (i < a.d) rout[base + i] = r[k];
      ss += r[k] * r[k];
    }
    const float rs = rsqrtf(block_sum(ss, sh) / a.d + a.eps);
    if (threadIdx.x == 0) rstd[blockIdx.x] = rs;
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      const int i = threadIdx.x + k * kNormThreads;
      if (i < a.d) y[base + i] = from_float<TY>(r[k] * rs * a.weight[i]);
    }
  } else {
    for (int i = threadIdx.x; i < a.d; i += blockDim.x) {
      const float r = to_float(x[i]) + (a.residual ? a.residual[base + i] : 0.f);
      rout[base + i] = r;
      ss += r * r;
    }
    const float rs = rsqrtf(block_sum(ss, sh) / a.d + a.eps);
    if (threadIdx.x == 0) rstd[blockIdx.x] = rs;
    for (int i = threadIdx.x; i < a.d; i += blockDim.x) y[base + i] = from_float<TY>(rout[base + i] * rs * a.weight[i]);
  }
}

// The same two cases as the forward: with kPer > 0 a row's gradient, input and weight stay
// in registers between the two passes, and each thread's weight-gradient columns too.
template <typename TX, typename TY, int kPer>
__global__ void __launch_bounds__(kNormThreads)
    rms_bwd_kernel(RmsNormArgs a, const float* rout, const float* rstd, const TY* gy, const float* grout, TX* gx,
                   float* gres, float* part_w, int64_t rows_per_block) {
  extern __shared__ float s_gw[];  // [d] (kPer == 0 only)
  __shared__ float sh[32];
  const int64_t first = static_cast<int64_t>(blockIdx.x) * rows_per_block;
  const int64_t last = a.rows < first + rows_per_block ? a.rows : first + rows_per_block;
  if constexpr (kPer > 0) {
    float w[kPer], gw[kPer];
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      const int i = threadIdx.x + k * kNormThreads;
      w[k] = i < a.d ? a.weight[i] : 0.f;
      gw[k] = 0.f;
    }
    for (int64_t row = first; row < last; ++row) {
      const int64_t base = row * a.d;
      const float rs = rstd[row];
      float g[kPer], n[kPer], dot = 0.f;  // dot: sum of dL/dn * n over the row
#pragma unroll
      for (int k = 0; k < kPer; ++k) {
        const int i = threadIdx.x + k * kNormThreads;
        g[k] = i < a.d ? to_float(gy[base + i]) : 0.f;
        n[k] = i < a.d ? rout[base + i] * rs : 0.f;
        dot += g[k] * w[k] * n[k];
      }
      const float mean_dot = block_sum(dot, sh) / a.d;
#pragma unroll
      for (int k = 0; k < kPer; ++k) {
        const int i = threadIdx.x + k * kNormThreads;
        if (i >= a.d) continue;
        float gr = rs * (g[k] * w[k] - n[k] * mean_dot);
        if (grout) gr += grout[base + i];
        gx[base + i] = from_float<TX>(gr);
        if (gres) gres[base + i] = gr;
        gw[k] += g[k] * n[k];
      }
    }
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      const int i = threadIdx.x + k * kNormThreads;
      if (i < a.d) part_w[static_cast<int64_t>(blockIdx.x) * a.d + i] = gw[k];
    }
  } else {
    for (int i = threadIdx.x; i < a.d; i += blockDim.x) s_gw[i] = 0.f;
    for (int64_t row = first; row < last; ++row) {
      const int64_t base = row * a.d;
      const float rs = rstd[row];
      float dot = 0.f;
      for (int i = threadIdx.x; i < a.d; i += blockDim.x)
        dot += to_float(gy[base + i]) * a.weight[i] * rout[base + i] * rs;
      const float mean_dot = block_sum(dot, sh) / a.d;
      for (int i = threadIdx.x; i < a.d; i += blockDim.x) {
        const float n = rout[base + i] * rs, g = to_float(gy[base + i]);
        float gr = rs * (g * a.weight[i] - n * mean_dot);
        if (grout) gr += grout[base + i];
        gx[base + i] = from_float<TX>(gr);
        if (gres) gres[base + i] = gr;
        s_gw[i] += g * n;
      }
    }
    for (int i = threadIdx.x; i < a.d; i += blockDim.x) part_w[static_cast<int64_t>(blockIdx.x) * a.d + i] = s_gw[i];
  }
}

constexpr int kWarpRowThreads = 128;  // 4 warps, one row each at a time

// Forward, one warp per row (the backward's condition): the row stays in registers between
// the sum of squares (a warp reduction, no block barrier) and the scaled output.
template <typename TX, typename TY, int kVecs>
__global__ void __launch_bounds__(kWarpRowThreads) rms_fwd_warp_kernel(RmsNormArgs a, float* rout, TY* y, float* rstd) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (kWarpRowThreads / 32) + (threadIdx.x >> 5);
  if (row >= a.rows) return;
  const int64_t base = row * a.d;
  const TX* x = static_cast<const TX*>(a.x) + base;
  float r[kVecs][4], ss = 0.f;
#pragma unroll
  for (int k = 0; k < kVecs; ++k) {
    const int col = (k * 32 + lane) * 4;
    if (col >= a.d) continue;
    load4(x + col, r[k]);
    if (a.residual) {
      float res[4];
      load4(a.residual + base + col, res);
#pragma unroll
      for (int q = 0; q < 4; ++q) r[k][q] += res[q];
    }
    store4(rout + base + col, r[k]);
#pragma unroll
    for (int q = 0; q < 4; ++q) ss += r[k][q] * r[k][q];
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  const float rs = rsqrtf(ss / a.d + a.eps);
  if (lane == 0) rstd[row] = rs;
#pragma unroll
  for (int k = 0; k < kVecs; ++k) {
    const int col = (k * 32 + lane) * 4;
    if (col >= a.d) continue;
    float w[4], out[4];
    load4(a.weight + col, w);
#pragma unroll
    for (int q = 0; q < 4; ++q) out[q] = r[k][q] * rs * w[q];
    store4(y + base + col, out);
  }
}

// kVecs: 4-element vectors per lane, a row of up to kVecs * 128. Each warp accumulates the
// weight gradient of its rows in its own row of shared memory (registers hold the row being
// worked on); the block sums its warps' rows in warp order at the end.
template <typename TX, typename TY, int kVecs>
__global__ void __launch_bounds__(kWarpRowThreads, kVecs <= 12 ? 4 : 3)
    rms_bwd_warp_kernel(RmsNormArgs a, const float* rout, const float* rstd, const TY* gy, const float* grout, TX* gx,
                        float* gres, float* part_w) {
  extern __shared__ __align__(16) float s_gw[];  // [warp][d]
  constexpr int kWarps = kWarpRowThreads / 32;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float* my_gw = s_gw + warp * a.d;
  const float zero[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
  for (int k = 0; k < kVecs; ++k) {
    const int col = (k * 32 + lane) * 4;
    if (col < a.d) store4(my_gw + col, zero);
  }
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kWarps;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + warp; row < a.rows; row += stride) {
    const int64_t base = row * a.d;
    const float rs = rstd[row];
    float g[kVecs][4], n[kVecs][4], dot = 0.f;  // dot: sum of dL/dn * n over the row
#pragma unroll
    for (int k = 0; k < kVecs; ++k) {
      const int col = (k * 32 + lane) * 4;
      if (col < a.d) {
        float w[4];
        load4(gy + base + col, g[k]);
        load4(rout + base + col, n[k]);
        load4(a.weight + col, w);
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          n[k][q] *= rs;
          dot += g[k][q] * w[q] * n[k][q];
        }
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
    const float mean_dot = dot / a.d;
#pragma unroll
    for (int k = 0; k < kVecs; ++k) {
      const int col = (k * 32 + lane) * 4;
      if (col >= a.d) continue;
      float w[4], gr[4], go[4] = {0.f, 0.f, 0.f, 0.f}, acc[4];
      load4(a.weight + col, w);
      if (grout) load4(grout + base + col, go);
      load4(my_gw + col, acc);
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        gr[q] = rs * (g[k][q] * w[q] - n[k][q] * mean_dot) + go[q];
        acc[q] += g[k][q] * n[k][q];
      }
      store4(my_gw + col, acc);
      store4(gx + base + col, gr);
      if (gres) store4(gres + base + col, gr);
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < a.d; i += kWarpRowThreads) {
    float sum = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) sum += s_gw[w * a.d + i];
    part_w[static_cast<int64_t>(blockIdx.x) * a.d + i] = sum;
  }
}

int bwd_blocks(const RmsNormArgs& a) { return static_cast<int>(std::min<int64_t>(a.rows, kMaxBwdBlocks)); }

// 4-element vectors per lane for the warp-per-row kernels (forward and backward), or 0 when
// they do not apply.
int warp_row_vecs(const RmsNormArgs& a, std::initializer_list<const void*> ptrs) {
  if (a.d % 4 != 0 || a.d > 16 * 128) return 0;
  for (const void* p : ptrs)
    if (p && reinterpret_cast<uintptr_t>(p) % 16 != 0) return 0;
  for (int k : {4, 8, 12, 16})
    if (a.d <= k * 128) return k;
  return 0;
}

// Blocks of one wave of the warp-per-row backward on this device (at most kMaxBwdBlocks: the
// workspace). The device's SM count and the kernel's occupancy are looked up once per (element
// types, device, shared-memory size), not on every call. K, the kernel's pointer type, fixes the
// element types but not kVecs; the shared-memory size fixes the width d, and d fixes kVecs, so an
// entry always belongs to one kernel.
template <typename K>
int warp_row_blocks(const RmsNormArgs& a, K kernel, size_t smem) {
  struct Entry { int dev; size_t smem; int64_t wave; };
  static std::mutex mu;
  static std::vector<Entry> cache;  // one per K, a handful of entries
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) dev = -1;
  int64_t wave = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (const Entry& e : cache)
      if (e.dev == dev && e.smem == smem) wave = e.wave;
    if (wave == 0) {
      int sms = 0, per_sm = 0;
      if (dev < 0 || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
          cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kWarpRowThreads, smem) != cudaSuccess)
        per_sm = 1, sms = 1;
      wave = static_cast<int64_t>(std::max(per_sm, 1)) * std::max(sms, 1);
      cache.push_back({dev, smem, wave});
    }
  }
  const int64_t needed = (a.rows + kWarpRowThreads / 32 - 1) / (kWarpRowThreads / 32);
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({wave, needed, bwd_blocks(a)})));
}

template <typename TX, typename TY, int kVecs>
Status bwd_warp_rows(const RmsNormArgs& a, const float* rout, const float* rstd, const TY* gy, const float* grout,
                     TX* gx, float* gres, float* ws, int* blocks, cudaStream_t s) {
  const size_t smem = sizeof(float) * a.d * (kWarpRowThreads / 32);  // <= 32 KB
  *blocks = warp_row_blocks(a, rms_bwd_warp_kernel<TX, TY, kVecs>, smem);
  rms_bwd_warp_kernel<TX, TY, kVecs><<<*blocks, kWarpRowThreads, smem, s>>>(a, rout, rstd, gy, grout, gx, gres, ws);
  return launch_status();
}

// Elements per thread kept in registers: the smallest of 4, 8, 16 that holds the row, else 0.
int row_per_thread(int d) {
  for (int k : {4, 8, 16})
    if (d <= k * kNormThreads) return k;
  return 0;
}

template <typename TX, typename TY>
Status fwd(const RmsNormArgs& a, float* rout, void* y, float* rstd, cudaStream_t s) {
  const unsigned rows = static_cast<unsigned>(a.rows);
  TY* yy = static_cast<TY*>(y);
  const unsigned warp_blocks = static_cast<unsigned>((a.rows + kWarpRowThreads / 32 - 1) / (kWarpRowThreads / 32));
  switch (warp_row_vecs(a, {a.x, a.residual, rout, y, a.weight})) {
    case 4: rms_fwd_warp_kernel<TX, TY, 4><<<warp_blocks, kWarpRowThreads, 0, s>>>(a, rout, yy, rstd); return launch_status();
    case 8: rms_fwd_warp_kernel<TX, TY, 8><<<warp_blocks, kWarpRowThreads, 0, s>>>(a, rout, yy, rstd); return launch_status();
    case 12: rms_fwd_warp_kernel<TX, TY, 12><<<warp_blocks, kWarpRowThreads, 0, s>>>(a, rout, yy, rstd); return launch_status();
    case 16: rms_fwd_warp_kernel<TX, TY, 16><<<warp_blocks, kWarpRowThreads, 0, s>>>(a, rout, yy, rstd); return launch_status();
    default: break;
  }
  switch (row_per_thread(a.d)) {
    case 4: rms_fwd_kernel<TX, TY, 4><<<rows, kNormThreads, 0, s>>>(a, rout, yy, rstd); break;
    case 8: rms_fwd_kernel<TX, TY, 8><<<rows, kNormThreads, 0, s>>>(a, rout, yy, rstd); break;
    case 16: rms_fwd_kernel<TX, TY, 16><<<rows, kNormThreads, 0, s>>>(a, rout, yy, rstd); break;
    default: rms_fwd_kernel<TX, TY, 0><<<rows, kNormThreads, 0, s>>>(a, rout, yy, rstd); break;
  }
  return launch_status();
}

// The block-per-row backward (any width).
template <typename TX, typename TY>
Status bwd_block_rows(const RmsNormArgs& a, const float* rout, const float* rstd, const TY* g, const float* grout,
                      TX* x, float* gres, float* ws, int blocks, int64_t per, cudaStream_t s) {
  switch (row_per_thread(a.d)) {
    case 4: rms_bwd_kernel<TX, TY, 4><<<blocks, kNormThreads, 0, s>>>(a, rout, rstd, g, grout, x, gres, ws, per); break;
    case 8: rms_bwd_kernel<TX, TY, 8><<<blocks, kNormThreads, 0, s>>>(a, rout, rstd, g, grout, x, gres, ws, per); break;
    case 16:
      rms_bwd_kernel<TX, TY, 16><<<blocks, kNormThreads, 0, s>>>(a, rout, rstd, g, grout, x, gres, ws, per);
      break;
    default: {
      const size_t smem = sizeof(float) * a.d;
      if (smem > 48 * 1024) {
        const cudaError_t e = cudaFuncSetAttribute(rms_bwd_kernel<TX, TY, 0>,
                                                   cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
        if (e != cudaSuccess) return cudaGetErrorString(e);
      }
      rms_bwd_kernel<TX, TY, 0><<<blocks, kNormThreads, smem, s>>>(a, rout, rstd, g, grout, x, gres, ws, per);
    }
  }
  return launch_status();
}

template <typename TX, typename TY>
Status bwd(const RmsNormArgs& a, const float* rout, const float* rstd, const void* gy, const float* grout, void* gx,
           float* gres, float* gw, float* ws, cudaStream_t s) {
  int blocks = bwd_blocks(a);
  const TY* g = static_cast<const TY*>(gy);
  TX* x = static_cast<TX*>(gx);
  Status st = nullptr;
  switch (warp_row_vecs(a, {rout, g, grout, x, gres, a.weight})) {
    case 4: st = bwd_warp_rows<TX, TY, 4>(a, rout, rstd, g, grout, x, gres, ws, &blocks, s); break;
    case 8: st = bwd_warp_rows<TX, TY, 8>(a, rout, rstd, g, grout, x, gres, ws, &blocks, s); break;
    case 12: st = bwd_warp_rows<TX, TY, 12>(a, rout, rstd, g, grout, x, gres, ws, &blocks, s); break;
    case 16: st = bwd_warp_rows<TX, TY, 16>(a, rout, rstd, g, grout, x, gres, ws, &blocks, s); break;
    default: st = bwd_block_rows<TX, TY>(a, rout, rstd, g, grout, x, gres, ws, blocks, (a.rows + blocks - 1) / blocks, s);
  }
  if (st) return st;
  return sum_slices(ws, blocks, a.d, gw, s);
}

Status check(const RmsNormArgs& a) {
  if (a.rows < 1 || a.d < 1) return "rms_norm (CUDA): empty shape";
  if (a.rows > 0x7fffffff) return "rms_norm (CUDA): too many rows";
  if (a.d > 48 * 1024) return "rms_norm (CUDA): feature size above 49152";
  return nullptr;
}

}  // namespace

Status rms_norm_forward(const RmsNormArgs& a, float* residual_out, void* y, float* rstd, void* stream) {
  if (Status s = check(a)) return s;
  auto st = static_cast<cudaStream_t>(stream);
  const bool xb = a.x_type == ElemType::kBFloat16, yb = a.y_type == ElemType::kBFloat16;
  if (xb && yb) return fwd<__nv_bfloat16, __nv_bfloat16>(a, residual_out, y, rstd, st);
  if (xb) return fwd<__nv_bfloat16, float>(a, residual_out, y, rstd, st);
  if (yb) return fwd<float, __nv_bfloat16>(a, residual_out, y, rstd, st);
  return fwd<float, float>(a, residual_out, y, rstd, st);
}

size_t rms_norm_backward_workspace(const RmsNormArgs& a) { return static_cast<size_t>(bwd_blocks(a)) * a.d; }

Status rms_norm_backward(const RmsNormArgs& a, const float* residual_out, const float* rstd, const void* grad_y,
                         const float* grad_residual_out, void* grad_x, float* grad_residual, float* grad_weight,
                         float* workspace, void* stream) {
  if (Status s = check(a)) return s;
  auto st = static_cast<cudaStream_t>(stream);
  const bool xb = a.x_type == ElemType::kBFloat16, yb = a.y_type == ElemType::kBFloat16;
  if (xb && yb)
    return bwd<__nv_bfloat16, __nv_bfloat16>(a, residual_out, rstd, grad_y, grad_residual_out, grad_x, grad_residual,
                                             grad_weight, workspace, st);
  if (xb)
    return bwd<__nv_bfloat16, float>(a, residual_out, rstd, grad_y, grad_residual_out, grad_x, grad_residual,
                                     grad_weight, workspace, st);
  if (yb)
    return bwd<float, __nv_bfloat16>(a, residual_out, rstd, grad_y, grad_residual_out, grad_x, grad_residual,
                                     grad_weight, workspace, st);
  return bwd<float, float>(a, residual_out, rstd, grad_y, grad_residual_out, grad_x, grad_residual, grad_weight,
                           workspace, st);
}

}  // namespace samba::kernels::cuda
