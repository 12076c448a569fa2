#include "samba/model/layers/rope.h"

#include <sstream>

#include "samba/core/error.h"

namespace samba {

RotaryEmbedding::RotaryEmbedding(int64_t head_dim, double base) : head_dim_(head_dim), base_(base) {
  check(head_dim > 0 && head_dim % 2 == 0, "RoPE needs an even head_dim, got ", head_dim);
  check(base > 0.0, "RoPE base must be positive, got ", base);
}

torch::Tensor rotate_half(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

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

torch::Tensor RotaryEmbedding::apply(const torch::Tensor& x, int64_t offset) {
  check(x.dim() == 4 && x.size(3) == head_dim_, "RoPE expects (B, T, H, ", head_dim_, "), got ", x.sizes());
  check(offset >= 0, "RoPE position offset must be >= 0, got ", offset);
  const auto dt = x.scalar_type();
  const auto compute = (dt == torch::kFloat64) ? torch::kFloat64 : torch::kFloat32;
  const int64_t T = x.size(1);
  auto [cos, sin] = cos_sin(offset + T, x.device(), compute);
  // (T, D) -> (1, T, 1, D) to broadcast over batch and heads.
  cos = cos.narrow(0, offset, T).unsqueeze(1).unsqueeze(0);
  sin = sin.narrow(0, offset, T).unsqueeze(1).unsqueeze(0);
  auto xc = x.to(compute);
  return (xc * cos + rotate_half(xc) * sin).to(dt);
}

}  // namespace samba
