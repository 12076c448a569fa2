// The one dispatch of the selective scan: reference switch, then device and dtype.
#include "samba/core/error.h"
#include "samba/kernels/selective_scan.h"

namespace samba::kernels {

std::tuple<torch::Tensor, torch::Tensor> selective_scan_with_state(
    const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A, const torch::Tensor& B,
    const torch::Tensor& C, const torch::Tensor& D, const torch::Tensor& z, const torch::Tensor& delta_bias,
    bool delta_softplus) {
  check(u.defined(), "selective_scan: u is required");
  if (use_reference_kernels()) return selective_scan_reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus);
  if (u.device().is_cpu()) return selective_scan_cpu(u, delta, A, B, C, D, z, delta_bias, delta_softplus);
  if (A.defined() && selective_scan_cuda_supports(u, A))
    return selective_scan_cuda(u, delta, A, B, C, D, z, delta_bias, delta_softplus);
  return selective_scan_reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus);
}

torch::Tensor selective_scan(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A,
                             const torch::Tensor& B, const torch::Tensor& C, const torch::Tensor& D,
                             const torch::Tensor& z, const torch::Tensor& delta_bias, bool delta_softplus) {
  return std::get<0>(selective_scan_with_state(u, delta, A, B, C, D, z, delta_bias, delta_softplus));
}

}  // namespace samba::kernels
