// The selective scan on CUDA, forward and backward (see scan_cuda.h for the interface).
//
// Layout of the work. One thread owns NT states of one channel (b, e) and runs them through
// the whole sequence; the `tpc` threads of a channel sit in adjacent lanes and sum their
// parts of y = C . h with shuffles. A block owns `cpb` channels of one batch row and walks
// the sequence in tiles: the block loads the tile's u, dt = softplus(delta + bias), B and C
// into shared memory (coalesced, whatever the layout of each input), the threads run the
// recurrence out of shared memory, and the block writes the gated output back. The cost is
// the exponentials, one per (channel, state, step): the threads keep the multi-function
// unit busy and the loads of other blocks overlap with them.
//
// Backward recomputes instead of storing per-step states: the forward is re-run once in a
// states-only mode that keeps the state every kScanChunk steps (a transient workspace, not
// saved activations); then each chunk, from the last, is recomputed from its saved state,
// keeping the state every kBwdSub steps in shared memory, and each sub-chunk is recomputed
// once more into registers (states and decays) and walked backwards.
//
// Determinism: no atomics. Per-channel sums (dA, dD, d bias) are accumulated by the thread
// that owns the channel, in time order; B and C are shared by the channels, so each block
// sums its channels' contributions in a fixed order into its own slot of a partial buffer,
// and a second kernel sums the slots in order.
#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "../common/cuda_util.cuh"
#include "../common/reduce_cuda.h"
#include "scan_cuda.h"

namespace samba::kernels::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kFwdTile = 32;  // divides kScanChunk
constexpr int kFwdNT = 8;     // states per thread, forward (SAMBA_SCAN_FWD_STATES=4 selects 4)
constexpr int kBwdNT = 4;     // states per thread, backward (more registers per state)
#ifndef SAMBA_SCAN_BWD_SUB
#define SAMBA_SCAN_BWD_SUB 8
#endif
constexpr int kBwdSub = SAMBA_SCAN_BWD_SUB;  // steps kept in registers in backward
constexpr float kLog2e = 1.4426950408889634f;
constexpr int kLoadBatch = 4;  // loads in flight per thread in the tile loads

static_assert(kScanChunk % kFwdTile == 0 && kScanChunk % kBwdSub == 0, "tiles must divide the chunk");

// How a block splits its work: tpc threads per channel (a power of two), cpb channels.
struct Split {
  int tpc, npad, cpb, threads;
};
Split make_split(int N, int nt, int max_channels, int max_threads) {
  Split s{};
  s.tpc = 1;
  while (s.tpc * nt < N) s.tpc <<= 1;
  s.npad = s.tpc * nt;
  s.cpb = std::max(1, std::min(max_threads / s.tpc, max_channels));
  s.threads = s.cpb * s.tpc;
  return s;
}

__host__ __device__ inline int num_chunks(int L) { return (L + kScanChunk - 1) / kScanChunk; }

// Loads the tile's u and dt (rows x len) and B, C ((len x npad), zero past N) into shared
// memory.
template <typename T, int GB>
__device__ void load_scan_tile(const ScanArgs& a, int b, int e0, int rows, int t0, int len, int ld, int npad,
                               float* s_u, float* s_dt, float* s_B, float* s_C) {
  gather_tile<GB>(
      rows, len, time_fast(a.u.s_row, a.u.s_time), [&](int r, int t) { return load<T>(a.u, b, e0 + r, t0 + t); },
      [&](int r, int t, float v) { s_u[r * ld + t] = v; });
  gather_tile<GB>(
      rows, len, time_fast(a.delta.s_row, a.delta.s_time),
      [&](int r, int t) { return load<T>(a.delta, b, e0 + r, t0 + t); },
      [&](int r, int t, float v) {
        const float x = v + (a.bias ? a.bias[e0 + r] : 0.f);
        s_dt[r * ld + t] = a.softplus ? softplus(x) : x;
      });
  const bool bc_fast = time_fast(a.B.s_row, a.B.s_time);
  gather_tile<GB>(
      npad, len, bc_fast, [&](int n, int t) { return n < a.N ? load<T>(a.B, b, n, t0 + t) : 0.f; },
      [&](int n, int t, float v) { s_B[t * npad + n] = v; });
  gather_tile<GB>(
      npad, len, bc_fast, [&](int n, int t) { return n < a.N ? load<T>(a.C, b, n, t0 + t) : 0.f; },
      [&](int n, int t, float v) { s_C[t * npad + n] = v; });
}

template <typename T, int GB, int NT>
__global__ void __launch_bounds__(kThreads) scan_fwd_kernel(ScanArgs a, MutView3 out, float* last_state,
                                                            float* chunk_states, Split sp) {
  extern __shared__ float smem[];
  const int ld = kFwdTile + 1;  // odd stride: lanes reading one step of different channels hit different banks
  float* s_dt = smem;
  float* s_u = s_dt + sp.cpb * ld;
  float* s_y = s_u + sp.cpb * ld;  // [tpc][cpb][ld]: each thread's part of C . h, summed at the end
  float* s_B = s_y + sp.tpc * sp.cpb * ld;
  float* s_C = s_B + kFwdTile * sp.npad;

  const int b = blockIdx.y, e0 = blockIdx.x * sp.cpb;
  const int rows = min(sp.cpb, a.E - e0);
  const int c = threadIdx.x / sp.tpc, g = threadIdx.x % sp.tpc, n0 = g * NT;
  const int e = e0 + c;
  // Every thread runs the loop; only active ones write outside shared memory.
  const bool active = c < rows;
  float A2[NT], h[NT];
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    A2[j] = (active && n0 + j < a.N) ? a.A[static_cast<int64_t>(e) * a.N + n0 + j] * kLog2e : 0.f;
    h[j] = 0.f;
  }
  const bool want_y = out.data != nullptr;
  const int nchunks = num_chunks(a.L);
  const float* my_dt = s_dt + c * ld;
  const float* my_u = s_u + c * ld;
  float* my_y = s_y + (g * sp.cpb + c) * ld;
  // One step; no cross-lane traffic, so unrolled steps overlap (the exponentials of step t+1
  // do not wait for the state of step t).
  auto step = [&](int t) {
    const float dt = my_dt[t], dtu = dt * my_u[t];
    const float* Bt = s_B + t * sp.npad + n0;
    const float* Ct = s_C + t * sp.npad + n0;
    float y0 = 0.f, y1 = 0.f;
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      h[j] = fast_exp2(dt * A2[j]) * h[j] + dtu * Bt[j];
      if (j % 2 == 0)
        y0 += Ct[j] * h[j];
      else
        y1 += Ct[j] * h[j];
    }
    my_y[t] = y0 + y1;
  };
  for (int t0 = 0; t0 < a.L; t0 += kFwdTile) {
    const int len = min(kFwdTile, a.L - t0);
    if (chunk_states && t0 % kScanChunk == 0 && active) {
      float* dst = chunk_states + ((static_cast<int64_t>(b) * a.E + e) * nchunks + t0 / kScanChunk) * a.N;
#pragma unroll
      for (int j = 0; j < NT; ++j)
        if (n0 + j < a.N) dst[n0 + j] = h[j];
    }
    load_scan_tile<T, GB>(a, b, e0, rows, t0, len, ld, sp.npad, s_u, s_dt, s_B, s_C);
    __syncthreads();
    if (len == kFwdTile) {
#pragma unroll 8
      for (int t = 0; t < kFwdTile; ++t) step(t);
    } else {
      for (int t = 0; t < len; ++t) step(t);
    }
    __syncthreads();
    if (want_y) {
      gather_tile<GB>(
          rows, len, time_fast(out.s_row, out.s_time),
          [&](int r, int t) { return a.z.data ? load<T>(a.z, b, e0 + r, t0 + t) : 0.f; },
          [&](int r, int t, float zv) {
            float y = 0.f;
            for (int k = 0; k < sp.tpc; ++k) y += s_y[(k * sp.cpb + r) * ld + t];
            if (a.D) y += a.D[e0 + r] * s_u[r * ld + t];
            if (a.z.data) y *= zv * sigmoid(zv);
            store<T>(out, b, e0 + r, t0 + t, y);
          });
    }
    __syncthreads();
  }
  if (last_state && active) {
#pragma unroll
    for (int j = 0; j < NT; ++j)
      if (n0 + j < a.N) last_state[(static_cast<int64_t>(b) * a.E + e) * a.N + n0 + j] = h[j];
  }
}

// ---- Forward, pipelined version for channel-contiguous layouts ----------------------------
// The layouts the Mamba layer passes (u, delta, z, the output and B/C all with unit stride
// across channels or states, 16-byte aligned): the tiles are copied with cp.async, three
// stages deep, so the next tiles' loads are in flight while the block runs the recurrence on
// the current one (the first version above waits for each tile's loads: its time went to load
// latency, ~36 us per 32-step tile against ~4 us of arithmetic). Per tile: a pass turns the raw
// delta and u into dt = softplus(delta + bias) and dt * u (once per channel and step, not once
// per state group), the threads run the steps out of shared memory, and a pass adds D * u,
// gates with silu(z) and stores. Other layouts, state sizes or alignments use the first version.
namespace pipe {

#ifndef SAMBA_SCAN_FWD_TILE
#define SAMBA_SCAN_FWD_TILE 32
#endif
constexpr int kTile = SAMBA_SCAN_FWD_TILE;  // steps per stage; divides kScanChunk (a compile definition for measuring)
static_assert(kScanChunk % kTile == 0, "the forward's tile must divide the chunk");
constexpr int kStages = 2;  // tiles in flight: the next one loads while this one is worked on
constexpr int kNT = 8;      // states per thread
constexpr int kMaxThreads = 128;

__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  const int n = valid ? 16 : 0;  // 0: zero-fill, nothing read
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

// Elements of T in one 16-byte vector.
template <typename T>
constexpr int kVec = 16 / static_cast<int>(sizeof(T));

// Rows t0 .. t0 + kRows - 1 of one input, kCols elements from column col0 of each (whole
// 16-byte vectors), into shared memory at dst[t * kCols + c]. Rows past L and columns at or
// past `cols` are zero-filled. The mapping of copies to threads is compile-time: no
// divisions, one address per copy.
template <typename T, int kRows, int kCols, int kThreads>
__device__ __forceinline__ void copy_rows_async(T* dst, const void* data, int64_t row0, int64_t s_time, int cols,
                                                int t0, int L) {
  constexpr int per_row = kCols / kVec<T>, total = kRows * per_row;
  static_assert(kCols % kVec<T> == 0, "rows are whole 16-byte vectors");
  const T* base = static_cast<const T*>(data) + row0;
#pragma unroll
  for (int i0 = 0; i0 < total; i0 += kThreads) {
    const int i = i0 + static_cast<int>(threadIdx.x);
    if (total % kThreads != 0 && i >= total) break;
    const int t = i / per_row, c = (i % per_row) * kVec<T>;
    const bool ok = t0 + t < L && c < cols;
    cp_async16(dst + t * kCols + c, ok ? static_cast<const void*>(base + (t0 + t) * s_time + c) : data, ok);
  }
}

// One 16-byte vector of shared or global memory as floats, and back.
__device__ __forceinline__ void load_vec(const __nv_bfloat16* p, float (&x)[8]) {
  const uint4 v = *reinterpret_cast<const uint4*>(p);
  const __nv_bfloat162* h2 = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const float2 f = __bfloat1622float2(h2[k]);
    x[2 * k] = f.x;
    x[2 * k + 1] = f.y;
  }
}
__device__ __forceinline__ void load_vec(const float* p, float (&x)[4]) {
  const float4 v = *reinterpret_cast<const float4*>(p);
  x[0] = v.x, x[1] = v.y, x[2] = v.z, x[3] = v.w;
}
__device__ __forceinline__ void store_vec(__nv_bfloat16* p, const float (&x)[8]) {
  uint4 v;
  __nv_bfloat162* h2 = reinterpret_cast<__nv_bfloat162*>(&v);
#pragma unroll
  for (int k = 0; k < 4; ++k) h2[k] = __floats2bfloat162_rn(x[2 * k], x[2 * k + 1]);
  *reinterpret_cast<uint4*>(p) = v;
}
__device__ __forceinline__ void store_vec(float* p, const float (&x)[4]) {
  *reinterpret_cast<float4*>(p) = make_float4(x[0], x[1], x[2], x[3]);
}
// kV consecutive fp32 values of shared memory (16-byte aligned) and back.
template <int kV>
__device__ __forceinline__ void load_f32(const float* p, float (&x)[kV]) {
#pragma unroll
  for (int q = 0; q < kV / 4; ++q) {
    const float4 v = reinterpret_cast<const float4*>(p)[q];
    x[4 * q] = v.x, x[4 * q + 1] = v.y, x[4 * q + 2] = v.z, x[4 * q + 3] = v.w;
  }
}
template <int kV>
__device__ __forceinline__ void store_f32(float* p, const float (&x)[kV]) {
#pragma unroll
  for (int q = 0; q < kV / 4; ++q)
    reinterpret_cast<float4*>(p)[q] = make_float4(x[4 * q], x[4 * q + 1], x[4 * q + 2], x[4 * q + 3]);
}

struct Layout {
  int tpc, cpb, threads;  // threads per channel, channels per block, threads
  int stage_elems;        // raw elements of one stage: u, delta, z (tile x cpb), B, C (tile x N)
};

__host__ __device__ constexpr Layout layout(int N) {
  Layout l{};
  l.tpc = 1;
  while (l.tpc * kNT < N) l.tpc <<= 1;
  l.cpb = kMaxThreads / l.tpc < 32 ? kMaxThreads / l.tpc : 32;
  l.threads = l.cpb * l.tpc;
  l.stage_elems = kTile * (3 * l.cpb + 2 * N);
  return l;
}

// Stages (raw tiles), then fp32 working rows: {dt, dt * u} and y ([tile][channel]), and B, C as
// fp32 ([tile][N] each; bf16 inputs only, fp32 ones are read from the stage).
template <typename T>
constexpr size_t smem_bytes(int N) {
  const Layout l = layout(N);
  return static_cast<size_t>(kStages) * l.stage_elems * sizeof(T) +
         sizeof(float) * (3 * kTile * l.cpb + (sizeof(T) == 4 ? 0 : 2 * kTile * N));
}

// Whether the pipelined forward takes these arguments: every view channel-contiguous with
// 16-byte aligned rows, whole 16-byte vectors across channels and states.
template <typename T>
bool eligible(const ScanArgs& a, const MutView3& out) {
  constexpr int vec = 16 / sizeof(T);
  // N a power of two from kNT to 64: every lane of a channel's group owns kNT real states.
  if (a.N < kNT || a.N > 64 || (a.N & (a.N - 1)) != 0 || a.E % vec != 0) return false;
  auto ok = [](const void* p, int64_t s_batch, int64_t s_row, int64_t s_time) {
    return p == nullptr || (s_row == 1 && reinterpret_cast<uintptr_t>(p) % 16 == 0 &&
                            (s_batch * static_cast<int64_t>(sizeof(T))) % 16 == 0 &&
                            (s_time * static_cast<int64_t>(sizeof(T))) % 16 == 0);
  };
  return ok(a.u.data, a.u.s_batch, a.u.s_row, a.u.s_time) && ok(a.delta.data, a.delta.s_batch, a.delta.s_row, a.delta.s_time) &&
         ok(a.z.data, a.z.s_batch, a.z.s_row, a.z.s_time) && ok(a.B.data, a.B.s_batch, a.B.s_row, a.B.s_time) &&
         ok(a.C.data, a.C.s_batch, a.C.s_row, a.C.s_time) && ok(out.data, out.s_batch, out.s_row, out.s_time);
}

template <typename T>
struct Stage {
  T *u, *delta, *z, *B, *C;  // B and C adjacent: [tile][N] then [tile][N]
};
template <typename T>
__device__ __forceinline__ Stage<T> stage_at(T* base, const Layout& l, int N, int k) {
  T* p = base + static_cast<size_t>(k % kStages) * l.stage_elems;
  Stage<T> s;
  s.u = p;
  s.delta = s.u + kTile * l.cpb;
  s.z = s.delta + kTile * l.cpb;
  s.B = s.z + kTile * l.cpb;
  s.C = s.B + kTile * N;
  return s;
}

// Issues the copies of tile `k` (steps k * kTile ...) into its stage; steps past L and channels
// past E are zero-filled.
template <typename T, int kN>
__device__ __forceinline__ void issue_tile(const ScanArgs& a, bool with_z, T* base, int b, int e0, int k) {
  constexpr Layout l = layout(kN);
  const Stage<T> s = stage_at(base, l, kN, k);
  const int t0 = k * kTile, cols = a.E - e0;
  copy_rows_async<T, kTile, l.cpb, l.threads>(s.u, a.u.data, b * a.u.s_batch + e0, a.u.s_time, cols, t0, a.L);
  copy_rows_async<T, kTile, l.cpb, l.threads>(s.delta, a.delta.data, b * a.delta.s_batch + e0, a.delta.s_time, cols,
                                              t0, a.L);
  if (with_z)
    copy_rows_async<T, kTile, l.cpb, l.threads>(s.z, a.z.data, b * a.z.s_batch + e0, a.z.s_time, cols, t0, a.L);
  copy_rows_async<T, kTile, kN, l.threads>(s.B, a.B.data, b * a.B.s_batch, a.B.s_time, kN, t0, a.L);
  copy_rows_async<T, kTile, kN, l.threads>(s.C, a.C.data, b * a.C.s_batch, a.C.s_time, kN, t0, a.L);
}

// kN: the state size, a compile-time constant so that the layout is one too.
// Per tile: (1) every thread turns its (step, channel vector) items of the raw tile into
// {dt, dt * u} rows (and bf16 B, C into fp32); (2) the recurrence, the states in registers;
// (3) the gated output, one 16-byte store per item.
template <typename T, int kN>
__global__ void __launch_bounds__(kMaxThreads) scan_fwd_pipe_kernel(ScanArgs a, MutView3 out, float* last_state,
                                                                    float* chunk_states) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  constexpr int NT = kNT;
  constexpr Layout l = layout(kN);
  constexpr int V = kVec<T>, kRowVecs = l.cpb / V;
  constexpr bool kF32 = sizeof(T) == 4;
  static_assert(NT == 8 && l.threads % kRowVecs == 0, "a thread's items keep one channel vector");
  T* stages = reinterpret_cast<T*>(smem_raw);
  float2* s_dtu = reinterpret_cast<float2*>(smem_raw + static_cast<size_t>(kStages) * l.stage_elems * sizeof(T));
  float* s_y = reinterpret_cast<float*>(s_dtu + kTile * l.cpb);
  float* s_bc = s_y + kTile * l.cpb;  // B then C, fp32 (bf16 inputs)

  const int b = blockIdx.y, e0 = blockIdx.x * l.cpb;
  const int c = threadIdx.x / l.tpc, g = threadIdx.x % l.tpc, n0 = g * NT;
  const int e = e0 + c;
  const bool active = e < a.E;
  const bool want_y = out.data != nullptr, with_z = want_y && a.z.data != nullptr;
  // The channel vector of this thread's items in the passes (fixed: threads % kRowVecs == 0).
  const int cv = (threadIdx.x % kRowVecs) * V;
  const bool cv_in = e0 + cv < a.E;  // whole vectors: E % V == 0
  float bias_v[V], D_v[V];
#pragma unroll
  for (int j = 0; j < V; ++j) {
    bias_v[j] = a.bias && cv_in ? a.bias[e0 + cv + j] : 0.f;
    D_v[j] = a.D && cv_in ? a.D[e0 + cv + j] : 0.f;
  }
  float A2[NT], h[NT];
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    A2[j] = active ? a.A[static_cast<int64_t>(e) * kN + n0 + j] * kLog2e : 0.f;
    h[j] = 0.f;
  }
  const int ntiles = (a.L + kTile - 1) / kTile, nchunks = num_chunks(a.L);
  for (int k = 0; k < kStages - 1; ++k) {
    if (k < ntiles) issue_tile<T, kN>(a, with_z, stages, b, e0, k);
    cp_async_commit();
  }
  const float2* my_dtu = s_dtu + c;
  for (int k = 0; k < ntiles; ++k) {
    const int t0 = k * kTile, len = min(kTile, a.L - t0);
    cp_async_wait<kStages - 2>();
    __syncthreads();  // tile k landed for every thread; tile k-1's stage and rows are free
    if (k + kStages - 1 < ntiles) issue_tile<T, kN>(a, with_z, stages, b, e0, k + kStages - 1);
    cp_async_commit();
    const Stage<T> st = stage_at(stages, l, kN, k);
    for (int i = threadIdx.x; i < kTile * kRowVecs; i += l.threads) {
      const int t = i / kRowVecs;
      float dv[V], uv[V], r[2 * V];
      load_vec(st.delta + t * l.cpb + cv, dv);
      load_vec(st.u + t * l.cpb + cv, uv);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const float x = dv[j] + bias_v[j];
        const float dt = a.softplus ? softplus(x) : x;
        r[2 * j] = dt;
        r[2 * j + 1] = dt * uv[j];
      }
      store_f32<2 * V>(reinterpret_cast<float*>(s_dtu + t * l.cpb + cv), r);
    }
    if constexpr (!kF32) {
      for (int i = threadIdx.x; i < 2 * kTile * kN / V; i += l.threads) {
        float x[V];
        load_vec(st.B + i * V, x);
        store_f32<V>(s_bc + i * V, x);
      }
    }
    if (chunk_states && t0 % kScanChunk == 0 && active) {
      float* dst = chunk_states + ((static_cast<int64_t>(b) * a.E + e) * nchunks + t0 / kScanChunk) * kN + n0;
#pragma unroll
      for (int j = 0; j < NT; ++j) dst[j] = h[j];
    }
    __syncthreads();
    const float* Bf = kF32 ? reinterpret_cast<const float*>(st.B) : s_bc;
    const float* Cf = Bf + kTile * kN;
    auto step = [&](int t) {
      const float2 d = my_dtu[t * l.cpb];
      float Bt[NT], Ct[NT];
      load_f32<NT>(Bf + t * kN + n0, Bt);
      load_f32<NT>(Cf + t * kN + n0, Ct);
      float y0 = 0.f, y1 = 0.f;
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        h[j] = fast_exp2(d.x * A2[j]) * h[j] + d.y * Bt[j];
        if (j % 2 == 0)
          y0 += Ct[j] * h[j];
        else
          y1 += Ct[j] * h[j];
      }
      // Every lane of the channel's group stores the same sum (no branch).
      if (want_y) s_y[t * l.cpb + c] = group_sum(y0 + y1, l.tpc);
    };
    if (len == kTile) {
#pragma unroll 8
      for (int t = 0; t < kTile; ++t) step(t);
    } else {
      for (int t = 0; t < len; ++t) step(t);
    }
    if (want_y) {
      __syncthreads();
      for (int i = threadIdx.x; i < len * kRowVecs; i += l.threads) {
        const int t = i / kRowVecs;
        if (!cv_in) continue;
        float yv[V], uv[V], zv[V];
        load_f32<V>(s_y + t * l.cpb + cv, yv);
        load_vec(st.u + t * l.cpb + cv, uv);
        if (with_z) load_vec(st.z + t * l.cpb + cv, zv);
#pragma unroll
        for (int j = 0; j < V; ++j) {
          float y = yv[j] + D_v[j] * uv[j];
          if (with_z) y *= zv[j] * sigmoid(zv[j]);
          yv[j] = y;
        }
        store_vec(static_cast<T*>(out.data) + b * out.s_batch + e0 + cv + (t0 + t) * out.s_time, yv);
      }
    }
  }
  if (last_state && active) {
#pragma unroll
    for (int j = 0; j < NT; ++j) last_state[(static_cast<int64_t>(b) * a.E + e) * kN + n0 + j] = h[j];
  }
}

template <typename T, int kN>
Status launch_n(const ScanArgs& a, MutView3 out, float* last_state, float* chunk_states, cudaStream_t stream) {
  constexpr Layout l = layout(kN);
  const dim3 grid((a.E + l.cpb - 1) / l.cpb, a.batch);
  const size_t smem = smem_bytes<T>(kN);
  if (smem > 48 * 1024) {
    const cudaError_t err = cudaFuncSetAttribute(scan_fwd_pipe_kernel<T, kN>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 static_cast<int>(smem));
    if (err != cudaSuccess) return cudaGetErrorString(err);
  }
  scan_fwd_pipe_kernel<T, kN><<<grid, l.threads, smem, stream>>>(a, out, last_state, chunk_states);
  return launch_status();
}

// eligible() admits N = 8, 16, 32, 64.
template <typename T>
Status launch(const ScanArgs& a, MutView3 out, float* last_state, float* chunk_states, cudaStream_t stream) {
  switch (a.N) {
    case 8: return launch_n<T, 8>(a, out, last_state, chunk_states, stream);
    case 16: return launch_n<T, 16>(a, out, last_state, chunk_states, stream);
    case 32: return launch_n<T, 32>(a, out, last_state, chunk_states, stream);
    default: return launch_n<T, 64>(a, out, last_state, chunk_states, stream);
  }
}

}  // namespace pipe

struct BwdOut {
  MutView3 u, delta, z;
  float *part_B, *part_C;   // (groups, batch, L, N)
  float* part_A;            // (batch, E, N)
  float *part_D, *part_bias;  // (batch, E)
};

// ---- Backward, pipelined version for the same layouts (N = 16) ----------------------------
// One block owns kBwdChannels channels of one batch row (kBwdTpc threads per channel, kBwdNT
// states each) and walks the chunks from the last: while it works on chunk k, the copies of
// chunk k-1 (u, delta, z, grad_out, B, C) are in flight (cp.async, two stages). Per chunk:
//   1. a pass turns the raw tile into fp32 working rows: dt = softplus(delta + bias), u,
//      gy = dLoss/d(y before the gate) = g * silu(z), zf = g * silu'(z); B and C as fp32;
//   2. the chunk is recomputed from its saved state: y (for the z gradient, zf * y) and the
//      state before every sub-chunk of kPipeSub steps (shared memory);
//   3. each sub-chunk, from the last, is recomputed into registers (states and decays) and
//      walked backwards; dB and dC of a step are summed over the warp's channels with
//      shuffles (halving: each lane ends with one of the 32 sums), then over the block's warps
//      in a fixed order into the block's slot of the partial buffers;
//   4. the chunk's du, d delta and dz go out from the working rows (coalesced).
// Every sum has a fixed order: bitwise deterministic, no atomics.
namespace pipe {

constexpr int kBwdNT = 4;                          // states per thread
constexpr int kBwdState = 16;                      // the one state size this version takes
constexpr int kBwdTpc = kBwdState / kBwdNT;        // threads per channel (4)
constexpr int kBwdChannels = 32;                   // channels per block
constexpr int kBwdThreads = kBwdChannels * kBwdTpc;  // 128
constexpr int kBwdWarps = kBwdThreads / 32;
constexpr int kChunk = kScanChunk;                 // steps per tile = the saved-state chunk
constexpr int kPipeSub = 8;                        // steps recomputed into registers at once
static_assert(kChunk % kPipeSub == 0 && kChunk <= 64, "sub-chunks must divide the chunk");
static_assert(kBwdTpc == 4 && kBwdChannels % 8 == 0, "the dB/dC halving assumes 8 channels x 4 groups per warp");

// Raw elements of one stage: u, delta, z, grad_out (kChunk x channels), B, C (kChunk x N).
constexpr int kBwdStageElems = kChunk * (4 * kBwdChannels + 2 * kBwdState);
constexpr int kBwdStages = 2;

template <typename T>
constexpr size_t bwd_smem_bytes() {
  return static_cast<size_t>(kBwdStages) * kBwdStageElems * sizeof(T) +
         sizeof(float) * (4 * kChunk * kBwdChannels                  // dt, u, gy, zf rows
                          + 2 * kChunk * kBwdState                   // B, C
                          + (kChunk / kPipeSub) * kBwdNT * kBwdThreads  // sub-chunk states
                          + kPipeSub * kBwdThreads);                 // per-warp dB/dC sums
}

template <typename T>
bool bwd_eligible(const ScanArgs& a, const View3& gout, const ScanGrads& g) {
  if (a.N != kBwdState) return false;
  MutView3 none{};
  if (!eligible<T>(a, none)) return false;
  auto ok = [](const void* p, int64_t s_batch, int64_t s_row, int64_t s_time) {
    return p == nullptr || (s_row == 1 && reinterpret_cast<uintptr_t>(p) % 16 == 0 &&
                            (s_batch * static_cast<int64_t>(sizeof(T))) % 16 == 0 &&
                            (s_time * static_cast<int64_t>(sizeof(T))) % 16 == 0);
  };
  return gout.data != nullptr && ok(gout.data, gout.s_batch, gout.s_row, gout.s_time) &&
         ok(g.u.data, g.u.s_batch, g.u.s_row, g.u.s_time) && ok(g.delta.data, g.delta.s_batch, g.delta.s_row, g.delta.s_time) &&
         ok(g.z.data, g.z.s_batch, g.z.s_row, g.z.s_time);
}

template <typename T>
struct BwdStage {
  T *u, *delta, *z, *g, *B, *C;  // B and C adjacent
};
template <typename T>
__device__ __forceinline__ BwdStage<T> bwd_stage_at(T* base, int k) {
  T* p = base + static_cast<size_t>(k & 1) * kBwdStageElems;
  BwdStage<T> s;
  s.u = p;
  s.delta = s.u + kChunk * kBwdChannels;
  s.z = s.delta + kChunk * kBwdChannels;
  s.g = s.z + kChunk * kBwdChannels;
  s.B = s.g + kChunk * kBwdChannels;
  s.C = s.B + kChunk * kBwdState;
  return s;
}

// Copies of chunk k into its stage; past L and past E zero-filled (zero u and grad make a
// padded channel's dB and dC contributions exactly zero).
template <typename T>
__device__ __forceinline__ void bwd_issue(const ScanArgs& a, const View3& gout, bool with_z, T* base, int b, int e0,
                                          int k) {
  const BwdStage<T> s = bwd_stage_at(base, k);
  const int t0 = k * kChunk, cols = a.E - e0;
  constexpr int R = kChunk, W = kBwdChannels, P = kBwdThreads;
  copy_rows_async<T, R, W, P>(s.u, a.u.data, b * a.u.s_batch + e0, a.u.s_time, cols, t0, a.L);
  copy_rows_async<T, R, W, P>(s.delta, a.delta.data, b * a.delta.s_batch + e0, a.delta.s_time, cols, t0, a.L);
  if (with_z) copy_rows_async<T, R, W, P>(s.z, a.z.data, b * a.z.s_batch + e0, a.z.s_time, cols, t0, a.L);
  copy_rows_async<T, R, W, P>(s.g, gout.data, b * gout.s_batch + e0, gout.s_time, cols, t0, a.L);
  copy_rows_async<T, R, kBwdState, P>(s.B, a.B.data, b * a.B.s_batch, a.B.s_time, kBwdState, t0, a.L);
  copy_rows_async<T, R, kBwdState, P>(s.C, a.C.data, b * a.C.s_batch, a.C.s_time, kBwdState, t0, a.L);
}

template <typename T>
__global__ void __launch_bounds__(kBwdThreads, 4) scan_bwd_pipe_kernel(ScanArgs a, View3 gout, BwdOut o,
                                                                       const float* chunk_states) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  constexpr int NT = kBwdNT, W = kBwdChannels;
  constexpr int V = kVec<T>, kRowVecs = W / V;
  static_assert(kBwdThreads % kRowVecs == 0, "a thread's items keep one channel vector");
  T* stages = reinterpret_cast<T*>(smem_raw);
  // Working rows, [step][channel] fp32.
  float* s_dt = reinterpret_cast<float*>(smem_raw + static_cast<size_t>(kBwdStages) * kBwdStageElems * sizeof(T));
  float* s_u = s_dt + kChunk * W;
  float* s_gy = s_u + kChunk * W;   // gy, then du
  float* s_zf = s_gy + kChunk * W;  // zf, then dz
  float* s_B = s_zf + kChunk * W;   // [kChunk][N], then C
  float* s_C = s_B + kChunk * kBwdState;
  float* s_ck = s_C + kChunk * kBwdState;                       // [sub][NT][threads]
  float* s_xw = s_ck + (kChunk / kPipeSub) * NT * kBwdThreads;  // [step in sub][warp][lane]

  const int b = blockIdx.y, e0 = blockIdx.x * W;
  const int rows = min(W, a.E - e0);
  const int c = threadIdx.x / kBwdTpc, g = threadIdx.x % kBwdTpc, n0 = g * NT;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int e = e0 + c;
  const bool active = c < rows;
  const bool with_z = a.z.data != nullptr;
  // The channel vector of this thread's items in the row passes.
  const int cv = (threadIdx.x % kRowVecs) * V;
  const bool cv_in = cv < rows;  // whole vectors: E % V == 0
  float A[NT], A2[NT], gA[NT], gh[NT];
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    A[j] = active ? a.A[static_cast<int64_t>(e) * kBwdState + n0 + j] : 0.f;
    A2[j] = A[j] * kLog2e;
    gA[j] = 0.f;
    gh[j] = 0.f;
  }
  const float Dv = (active && a.D) ? a.D[e] : 0.f;
  float gD = 0.f, gbias = 0.f;
  const int nchunks = num_chunks(a.L);
  const int64_t part_base = static_cast<int64_t>(blockIdx.x * a.batch + b) * a.L;

  bwd_issue<T>(a, gout, with_z, stages, b, e0, nchunks - 1);
  cp_async_commit();
  for (int k = nchunks - 1; k >= 0; --k) {
    const int t0 = k * kChunk, len = min(kChunk, a.L - t0);
    __syncthreads();  // the previous chunk is done with the working rows and with stage (k-1) & 1
    if (k > 0) bwd_issue<T>(a, gout, with_z, stages, b, e0, k - 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();  // chunk k landed for every thread
    {
      // 1. The raw chunk into fp32 rows, one (step, channel vector) item at a time.
      const BwdStage<T> st = bwd_stage_at(stages, k);
      for (int i = threadIdx.x; i < kChunk * kRowVecs; i += kBwdThreads) {
        const int t = i / kRowVecs, o_ = t * W + cv;
        float dv[V], gv[V], zv[V], uv[V], gy[V], zf[V];
        load_vec(st.delta + o_, dv);
        load_vec(st.g + o_, gv);
        load_vec(st.u + o_, uv);
        if (with_z) load_vec(st.z + o_, zv);
#pragma unroll
        for (int j = 0; j < V; ++j) {
          const float x = dv[j] + (a.bias && cv_in ? a.bias[e0 + cv + j] : 0.f);  // cached after the first chunk
          dv[j] = a.softplus ? softplus(x) : x;
          gy[j] = gv[j];
          zf[j] = 0.f;
          if (with_z) {
            const float sg = sigmoid(zv[j]);
            gy[j] = gv[j] * zv[j] * sg;
            zf[j] = gv[j] * sg * (1.f + zv[j] * (1.f - sg));
          }
        }
        store_f32<V>(s_dt + o_, dv);
        store_f32<V>(s_u + o_, uv);
        store_f32<V>(s_gy + o_, gy);
        store_f32<V>(s_zf + o_, zf);
      }
      for (int i = threadIdx.x; i < 2 * kChunk * kBwdState / V; i += kBwdThreads) {
        float x[V];
        load_vec(st.B + i * V, x);
        store_f32<V>(s_B + i * V, x);
      }
    }
    float h[NT];
    {
      const float* src = chunk_states + ((static_cast<int64_t>(b) * a.E + (active ? e : e0)) * nchunks + k) * kBwdState + n0;
#pragma unroll
      for (int j = 0; j < NT; ++j) h[j] = active ? src[j] : 0.f;
    }
    __syncthreads();

    // 2. Recompute the chunk's states up to its last sub-chunk: the state before each sub-chunk.
    const int nsub = (len + kPipeSub - 1) / kPipeSub;
#pragma unroll 4
    for (int t = 0; t < (nsub - 1) * kPipeSub; ++t) {
      if (t % kPipeSub == 0) {
#pragma unroll
        for (int j = 0; j < NT; ++j) s_ck[((t / kPipeSub) * NT + j) * kBwdThreads + threadIdx.x] = h[j];
      }
      const float dt = s_dt[t * W + c], dtu = dt * s_u[t * W + c];
      const float4 Bt = *reinterpret_cast<const float4*>(s_B + t * kBwdState + n0);
      const float Bv[NT] = {Bt.x, Bt.y, Bt.z, Bt.w};
#pragma unroll
      for (int j = 0; j < NT; ++j) h[j] = fast_exp2(dt * A2[j]) * h[j] + dtu * Bv[j];
    }
#pragma unroll
    for (int j = 0; j < NT; ++j) s_ck[((nsub - 1) * NT + j) * kBwdThreads + threadIdx.x] = h[j];

    // 3. Sub-chunks from the last, walked backwards.
    for (int s = nsub - 1; s >= 0; --s) {
      const int ts = s * kPipeSub;
      float hb[NT], hs[kPipeSub][NT], dec[kPipeSub][NT];
#pragma unroll
      for (int j = 0; j < NT; ++j) hb[j] = s_ck[(s * NT + j) * kBwdThreads + threadIdx.x];
      {
        float hc[NT];
#pragma unroll
        for (int j = 0; j < NT; ++j) hc[j] = hb[j];
        // Steps past len (last chunk only) run on the zero-filled tail of the rows: finite
        // states, and zero gradients in the walk below (gy and grad_out are zero there).
#pragma unroll
        for (int i = 0; i < kPipeSub; ++i) {
          const int t = ts + i;
          const float dt = s_dt[t * W + c], dtu = dt * s_u[t * W + c];
          const float4 Bt = *reinterpret_cast<const float4*>(s_B + t * kBwdState + n0);
          const float Bv[NT] = {Bt.x, Bt.y, Bt.z, Bt.w};
#pragma unroll
          for (int j = 0; j < NT; ++j) {
            dec[i][j] = fast_exp2(dt * A2[j]);
            hc[j] = dec[i][j] * hc[j] + dtu * Bv[j];
            hs[i][j] = hc[j];
          }
        }
      }
#pragma unroll
      for (int i = kPipeSub - 1; i >= 0; --i) {
        // No test against len: past it gy = 0, so every gradient and sum below gets exact
        // zeros, and those rows are never stored.
        const int t = ts + i;
        const int r = t * W + c;
        const float gy = s_gy[r], dt = s_dt[r], uu = s_u[r], dtu = dt * uu;
        const float4 Bt = *reinterpret_cast<const float4*>(s_B + t * kBwdState + n0);
        const float4 Ct = *reinterpret_cast<const float4*>(s_C + t * kBwdState + n0);
        const float Bv[NT] = {Bt.x, Bt.y, Bt.z, Bt.w}, Cv[NT] = {Ct.x, Ct.y, Ct.z, Ct.w};
        float sA = 0.f, sB = 0.f, y = 0.f, x[2 * NT];  // x: this channel's dB (0..3) and dC (4..7)
#pragma unroll
        for (int j = 0; j < NT; ++j) {
          y += Cv[j] * hs[i][j];
          gh[j] += gy * Cv[j];
          x[NT + j] = gy * hs[i][j];
          const float hp = i > 0 ? hs[i > 0 ? i - 1 : 0][j] : hb[j];
          const float ghd = gh[j] * dec[i][j];
          const float ge = ghd * hp;  // dLoss/d(dt * A)
          gA[j] += ge * dt;
          sA += ge * A[j];
          sB += gh[j] * Bv[j];
          x[j] = gh[j] * dtu;
          gh[j] = ghd;
        }
        // Sum over the warp's 8 channels (lane bits 2..4), halving: at each level a lane keeps
        // half of its values and adds its partner's copy of that half.
#pragma unroll
        for (int level = 0; level < 3; ++level) {
          const int mask = 16 >> level, half = NT >> level;  // 4, 2, 1 pairs
          const bool upper = (lane & mask) != 0;
#pragma unroll
          for (int q = 0; q < half; ++q) {
            const float send = upper ? x[q] : x[q + half];
            const float keep = upper ? x[q + half] : x[q];
            x[q] = keep + __shfl_xor_sync(0xffffffffu, send, mask);
          }
        }
        s_xw[(i * kBwdWarps + warp) * 32 + lane] = x[0];
        // Sums over the channel's 4 lanes (every lane gets them).
        sA += __shfl_xor_sync(0xffffffffu, sA, 1);
        sB += __shfl_xor_sync(0xffffffffu, sB, 1);
        y += __shfl_xor_sync(0xffffffffu, y, 1);
        sA += __shfl_xor_sync(0xffffffffu, sA, 2);
        sB += __shfl_xor_sync(0xffffffffu, sB, 2);
        y += __shfl_xor_sync(0xffffffffu, y, 2);
        const float gdt = sA + sB * uu;
        // softplus'(x) = sigmoid(x) = 1 - exp(-softplus(x)), from dt itself.
        const float gpre = a.softplus ? gdt * one_minus_exp_neg(dt) : gdt;
        gD += gy * uu;
        gbias += gpre;
        __syncwarp();  // the channel's lanes have read gy and dt before lane 0 overwrites them
        if (g == 0) {
          s_dt[r] = gpre;
          s_gy[r] = sB * dt + gy * Dv;
          s_zf[r] *= y + Dv * uu;  // zf * (y + D u): dz
        }
      }
      __syncthreads();
      // dB, dC of this sub-chunk: the warps' sums in warp order.
      for (int p = threadIdx.x; p < kPipeSub * 32; p += kBwdThreads) {
        const int i = p / 32, ln = p % 32, t = ts + i;
        if (t < len) {
          float sum = 0.f;
#pragma unroll
          for (int w = 0; w < kBwdWarps; ++w) sum += s_xw[(i * kBwdWarps + w) * 32 + ln];
          const int v = (ln >> 2) & 7, n = 4 * (ln & 3) + (v & 3);
          float* dst = (v >> 2) == 0 ? o.part_B : o.part_C;
          dst[(part_base + t0 + t) * kBwdState + n] = sum;
        }
      }
      __syncthreads();
    }

    // 4. This chunk's du, d delta and dz, one 16-byte store per item and gradient.
    if (cv_in) {
      for (int i = threadIdx.x; i < len * kRowVecs; i += kBwdThreads) {
        const int t = i / kRowVecs, r = t * W + cv;
        const int col = e0 + cv;
        float x[V];
        load_f32<V>(s_gy + r, x);
        store_vec(static_cast<T*>(o.u.data) + b * o.u.s_batch + col + (t0 + t) * o.u.s_time, x);
        load_f32<V>(s_dt + r, x);
        store_vec(static_cast<T*>(o.delta.data) + b * o.delta.s_batch + col + (t0 + t) * o.delta.s_time, x);
        if (o.z.data) {
          load_f32<V>(s_zf + r, x);
          store_vec(static_cast<T*>(o.z.data) + b * o.z.s_batch + col + (t0 + t) * o.z.s_time, x);
        }
      }
    }
  }
  if (active) {
#pragma unroll
    for (int j = 0; j < NT; ++j) o.part_A[(static_cast<int64_t>(b) * a.E + e) * kBwdState + n0 + j] = gA[j];
    if (g == 0) {
      o.part_D[static_cast<int64_t>(b) * a.E + e] = gD;
      o.part_bias[static_cast<int64_t>(b) * a.E + e] = gbias;
    }
  }
}

}  // namespace pipe

template <typename T, int GB>
__global__ void __launch_bounds__(kThreads) scan_bwd_kernel(ScanArgs a, View3 gout, BwdOut o,
                                                            const float* chunk_states, Split sp) {
  extern __shared__ float smem[];
  constexpr int NT = kBwdNT;
  const int ld = kScanChunk + 1;
  float* s_dt = smem;
  float* s_u = s_dt + sp.cpb * ld;
  float* s_gy = s_u + sp.cpb * ld;   // dLoss/d(y before the gate)
  float* s_gdt = s_gy + sp.cpb * ld; // first y before the gate, then dLoss/d(delta + bias)
  float* s_gu = s_gdt + sp.cpb * ld;
  float* s_B = s_gu + sp.cpb * ld;
  float* s_C = s_B + kScanChunk * sp.npad;
  const int ldr = sp.npad + 1;                            // padded: channels of a warp hit different banks
  float* s_redB = s_C + kScanChunk * sp.npad;             // [kBwdSub][cpb][ldr]
  float* s_redC = s_redB + kBwdSub * sp.cpb * ldr;
  float* s_sub = s_redC + kBwdSub * sp.cpb * ldr;         // [kScanChunk / kBwdSub][NT][threads]

  const int b = blockIdx.y, e0 = blockIdx.x * sp.cpb;
  const int rows = min(sp.cpb, a.E - e0);
  const int c = threadIdx.x / sp.tpc, g = threadIdx.x % sp.tpc, n0 = g * NT;
  const int e = e0 + c;
  const bool active = c < rows;
  float A[NT], A2[NT], gA[NT], gh[NT];
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    A[j] = (active && n0 + j < a.N) ? a.A[static_cast<int64_t>(e) * a.N + n0 + j] : 0.f;
    A2[j] = A[j] * kLog2e;
    gA[j] = 0.f;
    gh[j] = 0.f;
  }
  const float Dv = (active && a.D) ? a.D[e] : 0.f;
  float gD = 0.f, gbias = 0.f;
  const int nchunks = num_chunks(a.L);
  const int64_t part_base = static_cast<int64_t>(blockIdx.x * a.batch + b) * a.L;

  for (int k = nchunks - 1; k >= 0; --k) {
    const int t0 = k * kScanChunk, len = min(kScanChunk, a.L - t0);
    __syncthreads();  // the previous chunk's writers are done with shared memory
    load_scan_tile<T, GB>(a, b, e0, rows, t0, len, ld, sp.npad, s_u, s_dt, s_B, s_C);
    const bool g_fast = time_fast(gout.s_row, gout.s_time);
    gather_tile<GB>(
        rows, len, g_fast, [&](int r, int t) { return load<T>(gout, b, e0 + r, t0 + t); },
        [&](int r, int t, float v) { s_gy[r * ld + t] = v; });
    // z in gout's traversal order: the gate multiplies in place; s_gdt keeps silu'(z) terms
    // for the z gradient below (it is free until the chunk recompute writes y there).
    if (a.z.data) {
      __syncthreads();
      gather_tile<GB>(
          rows, len, g_fast, [&](int r, int t) { return load<T>(a.z, b, e0 + r, t0 + t); },
          [&](int r, int t, float zv) {
            const float sg = sigmoid(zv);
            s_gu[r * ld + t] = s_gy[r * ld + t] * sg * (1.f + zv * (1.f - sg));  // dLoss/dy_gated * silu'(z)
            s_gy[r * ld + t] *= zv * sg;
          });
    }
    __syncthreads();

    // Recompute the chunk from its saved state; keep the state before every sub-chunk.
    float h[NT];
#pragma unroll
    for (int j = 0; j < NT; ++j)
      h[j] = (active && n0 + j < a.N)
                 ? chunk_states[((static_cast<int64_t>(b) * a.E + e) * nchunks + k) * a.N + n0 + j]
                 : 0.f;
    const int nsub = (len + kBwdSub - 1) / kBwdSub;
    for (int s = 0; s < nsub; ++s) {
#pragma unroll
      for (int j = 0; j < NT; ++j) s_sub[(s * NT + j) * sp.threads + threadIdx.x] = h[j];
#pragma unroll
      for (int i = 0; i < kBwdSub; ++i) {
        const int t = s * kBwdSub + i;
        if (t < len) {
          const float dt = s_dt[c * ld + t], uu = s_u[c * ld + t], dtu = dt * uu;
          float y = 0.f;
#pragma unroll
          for (int j = 0; j < NT; ++j) {
            h[j] = fast_exp2(dt * A2[j]) * h[j] + dtu * s_B[t * sp.npad + n0 + j];
            y += s_C[t * sp.npad + n0 + j] * h[j];
          }
          y = group_sum(y, sp.tpc);
          if (g == 0) s_gdt[c * ld + t] = y + Dv * uu;
        }
      }
    }
    __syncthreads();
    if (o.z.data) {
      for_tile(rows, len, time_fast(o.z.s_row, o.z.s_time),
               [&](int r, int t) { store<T>(o.z, b, e0 + r, t0 + t, s_gu[r * ld + t] * s_gdt[r * ld + t]); });
    }
    __syncthreads();

    for (int s = nsub - 1; s >= 0; --s) {
      float hb[NT], hs[kBwdSub][NT], dec[kBwdSub][NT];
#pragma unroll
      for (int j = 0; j < NT; ++j) hb[j] = s_sub[(s * NT + j) * sp.threads + threadIdx.x];
      {
        float hc[NT];
#pragma unroll
        for (int j = 0; j < NT; ++j) hc[j] = hb[j];
#pragma unroll
        for (int i = 0; i < kBwdSub; ++i) {
          const int t = s * kBwdSub + i;
          if (t < len) {
            const float dt = s_dt[c * ld + t], dtu = dt * s_u[c * ld + t];
#pragma unroll
            for (int j = 0; j < NT; ++j) {
              dec[i][j] = fast_exp2(dt * A2[j]);
              hc[j] = dec[i][j] * hc[j] + dtu * s_B[t * sp.npad + n0 + j];
              hs[i][j] = hc[j];
            }
          }
        }
      }
#pragma unroll
      for (int i = kBwdSub - 1; i >= 0; --i) {
        const int t = s * kBwdSub + i;
        if (t >= len) continue;
        const float gy = s_gy[c * ld + t], dt = s_dt[c * ld + t], uu = s_u[c * ld + t], dtu = dt * uu;
        float gdt = 0.f, gu = 0.f;
        float* redB = s_redB + (i * sp.cpb + c) * ldr + n0;
        float* redC = s_redC + (i * sp.cpb + c) * ldr + n0;
#pragma unroll
        for (int j = 0; j < NT; ++j) {
          const float Bn = s_B[t * sp.npad + n0 + j], Cn = s_C[t * sp.npad + n0 + j];
          gh[j] += gy * Cn;
          redC[j] = gy * hs[i][j];
          const float hp = i > 0 ? hs[i > 0 ? i - 1 : 0][j] : hb[j];
          const float ge = gh[j] * hp * dec[i][j];  // dLoss/d(dt * A)
          gA[j] += ge * dt;
          gdt += ge * A[j] + gh[j] * Bn * uu;
          redB[j] = gh[j] * dtu;
          gu += gh[j] * Bn;
          gh[j] *= dec[i][j];
        }
        gdt = group_sum(gdt, sp.tpc);
        gu = group_sum(gu, sp.tpc) * dt;
        if (g == 0) {
          // softplus'(x) = sigmoid(x) = 1 - exp(-softplus(x)), from dt itself.
          const float gpre = a.softplus ? gdt * one_minus_exp_neg(dt) : gdt;
          s_gdt[c * ld + t] = gpre;
          s_gu[c * ld + t] = gu + gy * Dv;
          gD += gy * uu;
          gbias += gpre;
        }
      }
      __syncthreads();
      // dB, dC of this sub-chunk: sum the block's channels in order.
      for (int p = threadIdx.x; p < kBwdSub * sp.npad; p += blockDim.x) {
        const int i = p / sp.npad, n = p % sp.npad, t = s * kBwdSub + i;
        if (t < len && n < a.N) {
          float sb = 0.f, sc = 0.f;
          const float* rb = s_redB + i * sp.cpb * ldr + n;
          const float* rc = s_redC + i * sp.cpb * ldr + n;
#pragma unroll 8
          for (int cc = 0; cc < rows; ++cc) {
            sb += rb[cc * ldr];
            sc += rc[cc * ldr];
          }
          const int64_t idx = (part_base + t0 + t) * a.N + n;
          o.part_B[idx] = sb;
          o.part_C[idx] = sc;
        }
      }
      __syncthreads();
    }
    for_tile(rows, len, time_fast(o.u.s_row, o.u.s_time),
             [&](int r, int t) { store<T>(o.u, b, e0 + r, t0 + t, s_gu[r * ld + t]); });
    for_tile(rows, len, time_fast(o.delta.s_row, o.delta.s_time),
             [&](int r, int t) { store<T>(o.delta, b, e0 + r, t0 + t, s_gdt[r * ld + t]); });
  }
  if (active) {
#pragma unroll
    for (int j = 0; j < NT; ++j)
      if (n0 + j < a.N) o.part_A[(static_cast<int64_t>(b) * a.E + e) * a.N + n0 + j] = gA[j];
    if (g == 0) {
      o.part_D[static_cast<int64_t>(b) * a.E + e] = gD;
      o.part_bias[static_cast<int64_t>(b) * a.E + e] = gbias;
    }
  }
}

size_t fwd_smem(const Split& sp) {
  return sizeof(float) * ((2 + sp.tpc) * sp.cpb * (kFwdTile + 1) + 2 * kFwdTile * sp.npad);
}
size_t bwd_smem(const Split& sp) {
  return sizeof(float) * (5 * sp.cpb * (kScanChunk + 1) + 2 * kScanChunk * sp.npad +
                          2 * kBwdSub * sp.cpb * (sp.npad + 1) + (kScanChunk / kBwdSub) * sp.threads * kBwdNT);
}

// Forward blocks are small (2 warps for N = 16): a block's warps wait for its tile loads
// together, so many small blocks per SM keep some computing while others load.
Split fwd_split(int N, int nt) { return make_split(N, nt, 32, 64); }
Split bwd_split(int N) { return make_split(N, kBwdNT, 32, kThreads); }

// Variants kept for measuring, chosen once from the environment: SAMBA_SCAN_LOAD_BATCH=1
// (one load in flight per thread in the tile loads, the first version) and
// SAMBA_SCAN_FWD_STATES=4 (4 states per forward thread: twice the warps, half the work each).
bool env_is(const char* name, int value) {
  const char* v = std::getenv(name);
  return v != nullptr && std::atoi(v) == value;
}
int load_batch() {
  static const int gb = env_is("SAMBA_SCAN_LOAD_BATCH", 1) ? 1 : kLoadBatch;
  return gb;
}
int fwd_states() {
  static const int nt = env_is("SAMBA_SCAN_FWD_STATES", 4) ? 4 : kFwdNT;
  return nt;
}

template <typename T, int GB, int NT>
Status launch_forward_gb(const ScanArgs& a, MutView3 out, float* last_state, float* chunk_states,
                         cudaStream_t stream) {
  const Split sp = fwd_split(a.N, NT);
  const dim3 grid((a.E + sp.cpb - 1) / sp.cpb, a.batch);
  const size_t smem = fwd_smem(sp);
  if (smem > 48 * 1024) {
    const cudaError_t err =
        cudaFuncSetAttribute(scan_fwd_kernel<T, GB, NT>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (err != cudaSuccess) return cudaGetErrorString(err);
  }
  scan_fwd_kernel<T, GB, NT><<<grid, sp.threads, smem, stream>>>(a, out, last_state, chunk_states, sp);
  return launch_status();
}

// SAMBA_SCAN_PIPELINE=0 keeps the first forward for every layout (for measuring).
bool use_pipeline() {
  static const bool on = !env_is("SAMBA_SCAN_PIPELINE", 0);
  return on;
}

template <typename T>
Status launch_forward(const ScanArgs& a, MutView3 out, float* last_state, float* chunk_states, cudaStream_t stream) {
  if (use_pipeline() && pipe::eligible<T>(a, out)) return pipe::launch<T>(a, out, last_state, chunk_states, stream);
  if (load_batch() == 1) return launch_forward_gb<T, 1, kFwdNT>(a, out, last_state, chunk_states, stream);
  if (fwd_states() == 4) return launch_forward_gb<T, kLoadBatch, 4>(a, out, last_state, chunk_states, stream);
  return launch_forward_gb<T, kLoadBatch, kFwdNT>(a, out, last_state, chunk_states, stream);
}

struct Workspace {
  float* chunk_states;  // null when the caller passes the forward's
  float *part_B, *part_C, *part_A, *part_D, *part_bias;
  size_t total;
};
Workspace carve(const ScanArgs& a, float* base, bool states_given) {
  const Split sp = bwd_split(a.N);
  const int64_t groups = (a.E + sp.cpb - 1) / sp.cpb;
  const int64_t n_states = static_cast<int64_t>(a.batch) * a.E * num_chunks(a.L) * a.N;
  const int64_t n_part = groups * a.batch * a.L * a.N;
  const int64_t n_A = static_cast<int64_t>(a.batch) * a.E * a.N, n_D = static_cast<int64_t>(a.batch) * a.E;
  Workspace w{};
  int64_t used = 0;
  auto take = [&used, base](int64_t n) {
    float* r = base ? base + used : nullptr;
    used += n;
    return r;
  };
  w.chunk_states = states_given ? nullptr : take(n_states);
  w.part_B = take(n_part);
  w.part_C = take(n_part);
  w.part_A = take(n_A);
  w.part_D = take(n_D);
  w.part_bias = take(n_D);
  w.total = static_cast<size_t>(used);
  return w;
}

Status sum_partials(const ScanArgs& a, const ScanGrads& g, const Workspace& w, int groups, cudaStream_t stream);

template <typename T, int GB>
Status launch_backward_gb(const ScanArgs& a, View3 gout, const ScanGrads& g, const float* given_states,
                          float* workspace, cudaStream_t stream) {
  const Workspace w = carve(a, workspace, given_states != nullptr);
  const float* states = given_states;
  if (!states) {
    if (Status s = launch_forward<T>(a, MutView3{}, nullptr, w.chunk_states, stream)) return s;
    states = w.chunk_states;
  }
  const Split sp = bwd_split(a.N);
  const int groups = (a.E + sp.cpb - 1) / sp.cpb;
  const dim3 grid(groups, a.batch);
  const BwdOut o{g.u, g.delta, g.z, w.part_B, w.part_C, w.part_A, w.part_D, w.part_bias};
  if (use_pipeline() && pipe::bwd_eligible<T>(a, gout, g)) {
    static_assert(pipe::kBwdChannels == 32, "the partial buffers are carved for bwd_split's 32 channels per block");
    constexpr size_t psmem = pipe::bwd_smem_bytes<T>();
    const cudaError_t perr = cudaFuncSetAttribute(pipe::scan_bwd_pipe_kernel<T>,
                                                  cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(psmem));
    if (perr != cudaSuccess) return cudaGetErrorString(perr);
    pipe::scan_bwd_pipe_kernel<T><<<grid, pipe::kBwdThreads, psmem, stream>>>(a, gout, o, states);
    if (Status s = launch_status()) return s;
    return sum_partials(a, g, w, groups, stream);
  }
  const size_t smem = bwd_smem(sp);
  const cudaError_t err =
      cudaFuncSetAttribute(scan_bwd_kernel<T, GB>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  if (err != cudaSuccess) return cudaGetErrorString(err);
  scan_bwd_kernel<T, GB><<<grid, sp.threads, smem, stream>>>(a, gout, o, states, sp);
  if (Status s = launch_status()) return s;
  return sum_partials(a, g, w, groups, stream);
}

// The partial sums of both backward versions, in a fixed order.
Status sum_partials(const ScanArgs& a, const ScanGrads& g, const Workspace& w, int groups, cudaStream_t stream) {
  const int64_t bln = static_cast<int64_t>(a.batch) * a.L * a.N;
  if (Status s = sum_slices(w.part_B, groups, bln, g.B, stream)) return s;
  if (Status s = sum_slices(w.part_C, groups, bln, g.C, stream)) return s;
  if (Status s = sum_slices(w.part_A, a.batch, static_cast<int64_t>(a.E) * a.N, g.A, stream)) return s;
  if (g.D)
    if (Status s = sum_slices(w.part_D, a.batch, a.E, g.D, stream)) return s;
  if (g.bias)
    if (Status s = sum_slices(w.part_bias, a.batch, a.E, g.bias, stream)) return s;
  return nullptr;
}

template <typename T>
Status launch_backward(const ScanArgs& a, View3 gout, const ScanGrads& g, const float* states, float* workspace,
                       cudaStream_t stream) {
  return load_batch() == 1 ? launch_backward_gb<T, 1>(a, gout, g, states, workspace, stream)
                           : launch_backward_gb<T, kLoadBatch>(a, gout, g, states, workspace, stream);
}

Status check_args(const ScanArgs& a) {
  if (a.batch < 1 || a.E < 1 || a.L < 1 || a.N < 1) return "selective_scan (CUDA): empty shape";
  if (a.N > kScanMaxState) return "selective_scan (CUDA): state size above kScanMaxState";
  if (static_cast<int64_t>(a.batch) > 65535) return "selective_scan (CUDA): batch above 65535";
  return nullptr;
}

}  // namespace

Status selective_scan_forward(const ScanArgs& a, MutView3 out, float* last_state, float* chunk_states, void* stream) {
  if (Status s = check_args(a)) return s;
  auto st = static_cast<cudaStream_t>(stream);
  return a.type == ElemType::kBFloat16 ? launch_forward<__nv_bfloat16>(a, out, last_state, chunk_states, st)
                                       : launch_forward<float>(a, out, last_state, chunk_states, st);
}

size_t selective_scan_backward_workspace(const ScanArgs& a, bool states_given) {
  return carve(a, nullptr, states_given).total;
}

Status selective_scan_backward(const ScanArgs& a, View3 grad_out, const ScanGrads& g, const float* chunk_states,
                               float* workspace, void* stream) {
  if (Status s = check_args(a)) return s;
  auto st = static_cast<cudaStream_t>(stream);
  return a.type == ElemType::kBFloat16 ? launch_backward<__nv_bfloat16>(a, grad_out, g, chunk_states, workspace, st)
                                       : launch_backward<float>(a, grad_out, g, chunk_states, workspace, st);
}

}  // namespace samba::kernels::cuda
