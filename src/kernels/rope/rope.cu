// RoPE on CUDA: one block per (batch, time) row covers every head of q and k; a thread
// rotates V consecutive pairs (i, i + D/2) of one head, with 16-byte accesses when the
// layout allows (V = 8 bf16 / 4 fp32), else one pair at a time. The angles come from the
// fp32 tables (built in fp64 on the host: exact at long positions, where an fp32 p * inv_freq
// would not be); one table row serves all heads of the row, so it stays in L1.
#include <algorithm>
#include <utility>

#include "../common/cuda_util.cuh"
#include "rope_cuda.h"

namespace samba::kernels::cuda {
namespace {

template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

template <typename T, int V>
__device__ __forceinline__ Pack<T, V> load_pack(const T* p) {
  return *reinterpret_cast<const Pack<T, V>*>(p);
}
template <typename T, int V>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, V>& v) {
  *reinterpret_cast<Pack<T, V>*>(p) = v;
}

template <typename T, int V>
__global__ void __launch_bounds__(256) rope_kernel(RopeArgs a, float sin_sign) {
  const int half = a.d / 2, groups = half / V;
  const int heads0 = a.part[0].heads, heads = heads0 + a.part[1].heads;
  const int64_t bt = blockIdx.x, b = bt / a.time, t = bt % a.time;
  const float* crow = a.cos + (a.offset + t) * a.table_stride;
  const float* srow = a.sin + (a.offset + t) * a.table_stride;
  for (int j = threadIdx.x; j < heads * groups; j += blockDim.x) {
    int h = j / groups;
    const int g = j - h * groups;
    const bool second = h >= heads0;
    // Field by field: selecting a whole parameter struct by a runtime index would copy it
    // to local memory.
    const RopeTensor &p0 = a.part[0], &p1 = a.part[1];
    if (second) h -= heads0;
    const T* x = static_cast<const T*>(second ? p1.x : p0.x) + b * (second ? p1.s_batch : p0.s_batch) +
                 t * (second ? p1.s_time : p0.s_time) + h * (second ? p1.s_head : p0.s_head) + g * V;
    T* y = static_cast<T*>(second ? p1.y : p0.y) + ((b * a.time + t) * (second ? p1.heads : heads0) + h) * a.d + g * V;
    const auto x1 = load_pack<T, V>(x), x2 = load_pack<T, V>(x + half);
    const auto c = load_pack<float, V>(crow + g * V), s = load_pack<float, V>(srow + g * V);
    Pack<T, V> y1, y2;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float a1 = to_float(x1.v[k]), a2 = to_float(x2.v[k]), sk = sin_sign * s.v[k];
      y1.v[k] = from_float<T>(a1 * c.v[k] - a2 * sk);
      y2.v[k] = from_float<T>(a2 * c.v[k] + a1 * sk);
    }
    store_pack<T, V>(y, y1);
    store_pack<T, V>(y + half, y2);
  }
}

bool aligned(const void* p, int bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// Whether every access of V elements (and V table floats) is aligned to its size.
template <typename T, int V>
bool vectorizable(const RopeArgs& a) {
  if ((a.d / 2) % V != 0 || a.table_stride % V != 0) return false;
  if (!aligned(a.cos, sizeof(float) * V) || !aligned(a.sin, sizeof(float) * V)) return false;
  for (const RopeTensor& p : a.part) {
    if (p.heads == 0) continue;
    if (!aligned(p.x, sizeof(T) * V) || !aligned(p.y, sizeof(T) * V)) return false;
    if (p.s_batch % V != 0 || p.s_time % V != 0 || p.s_head % V != 0) return false;
  }
  return true;
}

template <typename T>
Status launch(const RopeArgs& a, float sign, cudaStream_t s) {
  constexpr int kVec = 16 / sizeof(T);
  const bool vec = vectorizable<T, kVec>(a);
  const int per_row = (a.part[0].heads + a.part[1].heads) * (a.d / 2) / (vec ? kVec : 1);
  const int threads = std::min(256, std::max(32, (per_row + 31) / 32 * 32));
  const auto blocks = static_cast<unsigned>(a.batch * a.time);
  if (vec)
    rope_kernel<T, kVec><<<blocks, threads, 0, s>>>(a, sign);
  else
    rope_kernel<T, 1><<<blocks, threads, 0, s>>>(a, sign);
  return launch_status();
}

}  // namespace

Status rope_rotate(const RopeArgs& a, bool inverse, void* stream) {
  if (a.d < 2 || a.d % 2 != 0) return "rope (CUDA): the head dim must be even and positive";
  if (a.part[0].heads < 0 || a.part[1].heads < 0) return "rope (CUDA): negative head count";
  if (a.batch * a.time > 0x7fffffff) return "rope (CUDA): more than 2^31 - 1 (batch, time) rows";
  if (a.batch * a.time == 0 || a.part[0].heads + a.part[1].heads == 0) return nullptr;
  if (static_cast<int64_t>(a.part[0].heads + a.part[1].heads) * a.d > (int64_t{1} << 30))
    return "rope (CUDA): too many heads";
  RopeArgs args = a;
  if (args.part[0].heads == 0) std::swap(args.part[0], args.part[1]);  // the kernel fills part 0 first
  auto st = static_cast<cudaStream_t>(stream);
  const float sign = inverse ? -1.f : 1.f;
  if (a.type == ElemType::kBFloat16) return launch<__nv_bfloat16>(args, sign, st);
  return launch<float>(args, sign, st);
}

}  // namespace samba::kernels::cuda
