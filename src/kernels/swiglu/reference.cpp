// SwiGLU activation: the libtorch reference and the dispatch.
#include "samba/core/error.h"
#include "samba/kernels/swiglu.h"

namespace samba::kernels {
namespace {

void check_args(const torch::Tensor& gate, const torch::Tensor& up) {
  check(gate.defined() && up.defined() && gate.sizes() == up.sizes(), "swiglu: gate ", gate.sizes(), " and up ",
        up.sizes(), " must have one shape");
  check(gate.is_floating_point() && gate.scalar_type() == up.scalar_type(), "swiglu: gate (", gate.scalar_type(),
        ") and up (", up.scalar_type(), ") must share a float dtype");
}

}  // namespace

torch::Tensor swiglu_reference(const torch::Tensor& gate, const torch::Tensor& up) {
  check_args(gate, up);
  return torch::silu(gate) * up;
}

torch::Tensor swiglu(const torch::Tensor& gate, const torch::Tensor& up) {
  check_args(gate, up);
  if (!use_reference_kernels() && swiglu_cuda_supports(gate, up)) return swiglu_cuda(gate, up);
  return swiglu_reference(gate, up);
}

}  // namespace samba::kernels
