// RoPE: the libtorch reference and the dispatch.
#include "samba/core/error.h"
#include "samba/kernels/rope.h"

namespace samba::kernels {
namespace {

void check_args(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin, int64_t offset) {
  check(x.defined() && x.dim() == 4, "rope: x must be (B, T, H, D), got ", x.sizes());
  const int64_t T = x.size(1), D = x.size(3);
  check(D % 2 == 0, "rope: the head dim must be even, got ", D);
  check(offset >= 0, "rope: the position offset must be >= 0, got ", offset);
  for (const auto* t : {&cos, &sin})
    check(t->defined() && t->dim() == 2 && t->size(1) == D && t->size(0) >= offset + T,
          "rope: cos/sin tables must be (>= ", offset + T, ", ", D, "), got ", t->sizes());
  check(cos.sizes() == sin.sizes(), "rope: cos ", cos.sizes(), " and sin ", sin.sizes(), " differ");
}

void check_qk(const torch::Tensor& q, const torch::Tensor& k) {
  check(q.dim() == 4 && k.dim() == 4 && q.size(0) == k.size(0) && q.size(1) == k.size(1) && q.size(3) == k.size(3),
        "rope_qk: q ", q.sizes(), " and k ", k.sizes(), " must share batch, time and head dim");
}

}  // namespace

torch::Tensor rotate_half(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

torch::Tensor rope_reference(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                             int64_t offset) {
  check_args(x, cos, sin, offset);
  const auto dt = x.scalar_type();
  const auto ct = dt == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  const int64_t T = x.size(1);
  // (T, D) -> (1, T, 1, D) to broadcast over batch and heads.
  auto c = cos.narrow(0, offset, T).to(ct).unsqueeze(1).unsqueeze(0);
  auto s = sin.narrow(0, offset, T).to(ct).unsqueeze(1).unsqueeze(0);
  auto xc = x.to(ct);
  return (xc * c + rotate_half(xc) * s).to(dt);
}

std::pair<torch::Tensor, torch::Tensor> rope_qk_reference(const torch::Tensor& q, const torch::Tensor& k,
                                                          const torch::Tensor& cos, const torch::Tensor& sin,
                                                          int64_t offset) {
  check_qk(q, k);
  return {rope_reference(q, cos, sin, offset), rope_reference(k, cos, sin, offset)};
}

torch::Tensor rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin, int64_t offset) {
  check_args(x, cos, sin, offset);
  if (!use_reference_kernels() && rope_cuda_supports(x, cos, sin)) return rope_cuda(x, cos, sin, offset);
  return rope_reference(x, cos, sin, offset);
}

std::pair<torch::Tensor, torch::Tensor> rope_qk(const torch::Tensor& q, const torch::Tensor& k,
                                                const torch::Tensor& cos, const torch::Tensor& sin, int64_t offset) {
  check_qk(q, k);
  check_args(q, cos, sin, offset);
  if (!use_reference_kernels() && rope_cuda_supports(q, cos, sin) && rope_cuda_supports(k, cos, sin) &&
      q.scalar_type() == k.scalar_type())
    return rope_qk_cuda(q, k, cos, sin, offset);
  return rope_qk_reference(q, k, cos, sin, offset);
}

}  // namespace samba::kernels
