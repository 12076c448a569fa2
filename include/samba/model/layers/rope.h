#pragma once
// Rotary position embedding, rotate-half convention over the full head dim:
//   inv_freq_i = base^(-2i / D), i < D/2;  angle(p, i) = p * inv_freq_i
//   x' = x * cos + rotate_half(x) * sin,  rotate_half([x1, x2]) = [-x2, x1]
// with cos/sin of shape (T, D) repeating the D/2 angles twice. After rotation, the dot product
// of a query at p and a key at p' depends on p - p' only.
//
// Not a torch module: it has no parameters, and cos/sin are a cache (recomputed on demand,
// never exported). The table is built in fp64 on the CPU, so every device and dtype sees the
// same angles even at the 4x-training-length positions of evaluation.
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>

namespace samba {

class RotaryEmbedding {
 public:
  RotaryEmbedding(int64_t head_dim, double base);

  // x (B, T, H, D) holding positions offset .. offset + T - 1 -> same shape and dtype.
  // Half-precision inputs are rotated in fp32 and cast back.
  // Through kernels::rope: the fused CUDA kernel on CUDA fp32/bf16, libtorch ops otherwise.
  torch::Tensor apply(const torch::Tensor& x, int64_t offset = 0);
  // q (B, T, Hq, D) and k (B, T, Hk, D) at the same positions (one launch on CUDA).
  std::pair<torch::Tensor, torch::Tensor> apply_qk(const torch::Tensor& q, const torch::Tensor& k, int64_t offset = 0);

  // cos, sin (length, D) for positions 0 .. length - 1, cached per (device, dtype); a request
  // for more positions than cached rebuilds the table (at least doubling it).
  std::pair<torch::Tensor, torch::Tensor> cos_sin(int64_t length, const torch::Device& device, torch::ScalarType dtype);

  int64_t head_dim() const { return head_dim_; }
  double base() const { return base_; }

 private:
  std::pair<torch::Tensor, torch::Tensor> tables_for(const torch::Tensor& x, int64_t offset);

  int64_t head_dim_;
  double base_;
  std::map<std::string, std::pair<torch::Tensor, torch::Tensor>> cache_;
};

torch::Tensor rotate_half(const torch::Tensor& x);

}  // namespace samba
