#include "samba/model/layers/rope.h"

#include <sstream>

#include "samba/core/error.h"
#include "samba/kernels/rope.h"

namespace samba {

RotaryEmbedding::RotaryEmbedding(int64_t head_dim, double base) : head_dim_(head_dim), base_(base) {
  check(head_dim > 0 && head_dim % 2 == 0, "RoPE needs an even head_dim, got ", head_dim);
  check(base > 0.0, "RoPE base must be positive, got ", base);
}

torch::Tensor rotate_half(const torch::Tensor& x) { return kernels::rotate_half(x); }

std::pair<torch::Tensor, torch::Tensor> RotaryEmbedding::cos_sin(int64_t length, const torch::Device& device,
                                                                 torch::ScalarType dtype) {
  std::ostringstream key;
  key << device << '/' << dtype;
  auto it = cache_.find(key.str());
  if (it == cache_.end() || it->second.first.size(0) < length) {
    const int64_t have = it == cache_.end() ? 0 : it->second.first.size(0);
    const int64_t rows = std::max<int64_t>({length, 2 * have, 64});
    auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
    auto inv_freq = torch::pow(base_, -torch::arange(0, head_dim_, 2, f64) / static_cast<double>(head_dim_));
    auto angles = torch::outer(torch::arange(rows, f64), inv_freq);
    angles = torch::cat({angles, angles}, -1);
    auto table = std::make_pair(angles.cos().to(device, dtype), angles.sin().to(device, dtype));
    it = cache_.insert_or_assign(key.str(), std::move(table)).first;
  }
  return {it->second.first.narrow(0, 0, length), it->second.second.narrow(0, 0, length)};
}

// Tables in the compute dtype: fp32 for half-precision and fp32 x, fp64 for fp64 x.
std::pair<torch::Tensor, torch::Tensor> RotaryEmbedding::tables_for(const torch::Tensor& x, int64_t offset) {
  check(x.dim() == 4 && x.size(3) == head_dim_, "RoPE expects (B, T, H, ", head_dim_, "), got ", x.sizes());
  check(offset >= 0, "RoPE position offset must be >= 0, got ", offset);
  const auto compute = x.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  return cos_sin(offset + x.size(1), x.device(), compute);
}

torch::Tensor RotaryEmbedding::apply(const torch::Tensor& x, int64_t offset) {
  auto [cos, sin] = tables_for(x, offset);
  return kernels::rope(x, cos, sin, offset);
}

std::pair<torch::Tensor, torch::Tensor> RotaryEmbedding::apply_qk(const torch::Tensor& q, const torch::Tensor& k,
                                                                  int64_t offset) {
  check(k.dim() == 4 && k.size(3) == head_dim_, "RoPE expects (B, T, H, ", head_dim_, "), got ", k.sizes());
  auto [cos, sin] = tables_for(q, offset);
  return kernels::rope_qk(q, k, cos, sin, offset);
}

}  // namespace samba
