// RMSNorm + residual add: the libtorch reference and the dispatch.
#include "samba/core/error.h"
#include "samba/kernels/rms_norm.h"

namespace samba::kernels {
namespace {

void check_args(const torch::Tensor& x, const torch::Tensor& residual, const torch::Tensor& weight) {
  check(x.defined() && x.dim() >= 1, "rms_norm_residual: x must have a feature dimension");
  check(weight.defined() && weight.dim() == 1 && weight.size(0) == x.size(-1), "rms_norm_residual: weight must be (",
        x.size(-1), "), got ", weight.sizes());
  if (residual.defined())
    check(residual.sizes() == x.sizes(), "rms_norm_residual: residual ", residual.sizes(), " must match x ",
          x.sizes());
}

}  // namespace

std::tuple<torch::Tensor, torch::Tensor> rms_norm_residual_reference(const torch::Tensor& x,
                                                                     const torch::Tensor& residual,
                                                                     const torch::Tensor& weight, double eps,
                                                                     torch::ScalarType out_dtype) {
  check_args(x, residual, weight);
  const auto ct = x.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  auto r = residual.defined() ? residual.to(ct) + x.to(ct) : x.to(ct);
  auto y = r * torch::rsqrt(r.pow(2).mean(-1, /*keepdim=*/true) + eps) * weight.to(ct);
  return {y.to(out_dtype), r};
}

std::tuple<torch::Tensor, torch::Tensor> rms_norm_residual(const torch::Tensor& x, const torch::Tensor& residual,
                                                           const torch::Tensor& weight, double eps,
                                                           torch::ScalarType out_dtype) {
  check_args(x, residual, weight);
  if (!use_reference_kernels() && rms_norm_residual_cuda_supports(x, residual, out_dtype))
    return rms_norm_residual_cuda(x, residual, weight, eps, out_dtype);
  return rms_norm_residual_reference(x, residual, weight, eps, out_dtype);
}

}  // namespace samba::kernels
