// Softmax cross-entropy of LM-head logits with the gradient written in place. One block per
// row. Pass 1 reads the row once with 16-byte loads (the unaligned head and tail of a row
// element by element), keeping up to kCacheVecs vectors per thread in registers, and folds it
// into a running (max, sum of exponentials) per thread; the block merges those in a fixed
// order (warp butterfly, then the warps in order), so the result is reproducible bit for bit.
// Pass 2 writes softmax - one_hot from the registers, rereading from L2 only the part of a row
// longer than the registers hold (bf16 rows up to 32768 fit). Exponentials are base 2 on the
// multi-function unit, the logits pre-scaled by log2(e).
#include <climits>
#include <cstdint>

#include "../common/cuda_util.cuh"
#include "xent_cuda.h"

namespace samba::kernels::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int kCacheVecs = 8;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Running log-sum-exp in base 2 over values y: m = max(y), s = sum of 2^(y - m). Empty: m = -inf,
// s = 0. Offsets are taken from 0 instead of m while m is -inf, so rows of -inf give no NaN.
struct Lse2 {
  float m, s;
};

__device__ __forceinline__ float finite_ref(float m) { return m == -INFINITY ? 0.f : m; }

__device__ __forceinline__ Lse2 merge(const Lse2& a, const Lse2& b) {
  const float m = fmaxf(a.m, b.m), ref = finite_ref(m);
  return {m, a.s * fast_exp2(a.m - ref) + b.s * fast_exp2(b.m - ref)};
}

// Folds n values in with one rescale of the running sum.
template <int n>
__device__ __forceinline__ void fold(Lse2& acc, const float (&y)[n]) {
  float vm = y[0];
#pragma unroll
  for (int i = 1; i < n; ++i) vm = fmaxf(vm, y[i]);
  const float m = fmaxf(acc.m, vm), ref = finite_ref(m);
  float s = acc.s * fast_exp2(acc.m - ref);
#pragma unroll
  for (int i = 0; i < n; ++i) s += fast_exp2(y[i] - ref);
  acc = {m, s};
}

// Merge over the block, the same value in every thread; `sh` holds kThreads / 32 pairs.
__device__ Lse2 block_merge(Lse2 v, Lse2* sh) {
  for (int o = 16; o > 0; o >>= 1)
    v = merge(v, {__shfl_xor_sync(0xffffffffu, v.m, o), __shfl_xor_sync(0xffffffffu, v.s, o)});
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  Lse2 total = sh[0];
  for (int w = 1; w < kThreads / 32; ++w) total = merge(total, sh[w]);
  return total;
}

// A 16-byte vector of logits <-> its elements as floats. bf16 is the top half of an fp32, so
// unpacking is exact shifts; packing rounds to nearest even (as torch's .to(bf16)).
template <typename T>
struct Vec;
template <>
struct Vec<float> {
  static constexpr int kN = 4;
  __device__ static void unpack(const uint4& u, float (&x)[kN]) {
    x[0] = __uint_as_float(u.x), x[1] = __uint_as_float(u.y), x[2] = __uint_as_float(u.z), x[3] = __uint_as_float(u.w);
  }
  __device__ static uint4 pack(const float (&x)[kN]) {
    return {__float_as_uint(x[0]), __float_as_uint(x[1]), __float_as_uint(x[2]), __float_as_uint(x[3])};
  }
};
template <>
struct Vec<__nv_bfloat16> {
  static constexpr int kN = 8;
  __device__ static void split(unsigned w, float& lo, float& hi) {
    lo = __uint_as_float(w << 16);
    hi = __uint_as_float(w & 0xffff0000u);
  }
  __device__ static unsigned join(float lo, float hi) {
    return static_cast<unsigned>(__bfloat16_as_ushort(__float2bfloat16_rn(lo))) |
           (static_cast<unsigned>(__bfloat16_as_ushort(__float2bfloat16_rn(hi))) << 16);
  }
  __device__ static void unpack(const uint4& u, float (&x)[kN]) {
    split(u.x, x[0], x[1]), split(u.y, x[2], x[3]), split(u.z, x[4], x[5]), split(u.w, x[6], x[7]);
  }
  __device__ static uint4 pack(const float (&x)[kN]) {
    return {join(x[0], x[1]), join(x[2], x[3]), join(x[4], x[5]), join(x[6], x[7])};
  }
};

template <typename T>
__global__ void __launch_bounds__(kThreads) xent_kernel(XentArgs a, float* row_loss) {
  using V = Vec<T>;
  constexpr int kN = V::kN;
  __shared__ Lse2 sh[kThreads / 32];
  const int n = static_cast<int>(a.vocab), t = threadIdx.x;
  const int64_t row = blockIdx.x;
  T* x = static_cast<T*>(a.logits) + row * a.vocab;
  // Elements before the first 16-byte boundary, whole vectors, elements after the last one.
  const int head = min(n, static_cast<int>(((16 - (reinterpret_cast<uintptr_t>(x) & 15)) & 15) / sizeof(T)));
  const int nvec = (n - head) / kN, tail_start = head + nvec * kN, tail = n - tail_start;
  uint4* xv = reinterpret_cast<uint4*>(x + head);

  const int64_t target = a.targets[row];
  if (target == a.ignore_index) {
    const T zero = from_float<T>(0.f);
    if (t < head) x[t] = zero;
    if (t < tail) x[tail_start + t] = zero;
    for (int v = t; v < nvec; v += kThreads) xv[v] = make_uint4(0u, 0u, 0u, 0u);
    if (t == 0) row_loss[row] = 0.f;
    return;
  }
  const bool in_range = target >= 0 && target < a.vocab;
  const int tgt = in_range ? static_cast<int>(target) : -1;
  // Read before the barrier in block_merge: pass 2 overwrites the row.
  const float x_target = (t == 0 && in_range) ? to_float(x[tgt]) : 0.f;

  // Pass 1. The cached vectors' loads are all issued before any is used.
  Lse2 acc{-INFINITY, 0.f};
  float y_head = -INFINITY, y_tail = -INFINITY;
  if (t < head) y_head = to_float(x[t]) * kLog2e;
  if (t < tail) y_tail = to_float(x[tail_start + t]) * kLog2e;
  fold<2>(acc, {y_head, y_tail});
  uint4 cache[kCacheVecs];
#pragma unroll
  for (int k = 0; k < kCacheVecs; ++k)
    if (t + k * kThreads < nvec) cache[k] = xv[t + k * kThreads];
  float y[kN];
#pragma unroll
  for (int k = 0; k < kCacheVecs; ++k) {
    if (t + k * kThreads >= nvec) break;
    V::unpack(cache[k], y);
#pragma unroll
    for (int i = 0; i < kN; ++i) y[i] *= kLog2e;
    fold(acc, y);
  }
  for (int v = t + kCacheVecs * kThreads; v < nvec; v += kThreads) {
    V::unpack(xv[v], y);
#pragma unroll
    for (int i = 0; i < kN; ++i) y[i] *= kLog2e;
    fold(acc, y);
  }
  const Lse2 total = block_merge(acc, sh);
  const float lse2 = total.m + log2f(total.s);
  if (t == 0) row_loss[row] = in_range ? lse2 * kLn2 - x_target : __int_as_float(0x7fc00000);

  // Pass 2: 2^(y - lse2) - [index == target]. y is recomputed exactly as in pass 1.
  auto grad = [&](float yi, int index) { return fast_exp2(yi - lse2) - (index == tgt ? 1.f : 0.f); };
  if (t < head) x[t] = from_float<T>(grad(y_head, t));
  if (t < tail) x[tail_start + t] = from_float<T>(grad(y_tail, tail_start + t));
  auto write_vec = [&](int v, const uint4& u) {
    V::unpack(u, y);
    const int first = head + v * kN;
#pragma unroll
    for (int i = 0; i < kN; ++i) y[i] = grad(y[i] * kLog2e, first + i);
    xv[v] = V::pack(y);
  };
#pragma unroll
  for (int k = 0; k < kCacheVecs; ++k) {
    if (t + k * kThreads >= nvec) break;
    write_vec(t + k * kThreads, cache[k]);
  }
  for (int v = t + kCacheVecs * kThreads; v < nvec; v += kThreads) write_vec(v, xv[v]);
}

template <typename T>
Status launch(const XentArgs& a, float* row_loss, cudaStream_t s) {
  xent_kernel<T><<<static_cast<unsigned>(a.rows), kThreads, 0, s>>>(a, row_loss);
  return launch_status();
}

}  // namespace

Status softmax_xent_inplace(const XentArgs& a, float* row_loss, void* stream) {
  if (a.rows < 0 || a.vocab < 1) return "softmax_xent (CUDA): empty vocabulary or negative rows";
  if (a.rows > INT_MAX) return "softmax_xent (CUDA): too many rows for one launch";
  if (a.vocab > INT_MAX / 2) return "softmax_xent (CUDA): vocabulary too large";
  if (a.rows == 0) return nullptr;
  auto st = static_cast<cudaStream_t>(stream);
  return a.type == ElemType::kBFloat16 ? launch<__nv_bfloat16>(a, row_loss, st) : launch<float>(a, row_loss, st);
}

}  // namespace samba::kernels::cuda
