// Torch glue of the CUDA SwiGLU activation (swiglu.cu). Stubs that throw without CUDA.
#include "samba/core/error.h"
#include "samba/kernels/swiglu.h"

#ifdef SAMBA_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "../common/cuda_glue.h"
#include "swiglu_cuda.h"
#endif

namespace samba::kernels {

bool swiglu_cuda_supports(const torch::Tensor& gate, const torch::Tensor& up) {
#ifdef SAMBA_WITH_CUDA
  const auto dt = gate.scalar_type();
  return gate.is_cuda() && up.device() == gate.device() && up.scalar_type() == dt &&
         (dt == torch::kFloat32 || dt == torch::kBFloat16) && gate.sizes() == up.sizes();
#else
  (void)gate;
  (void)up;
  return false;
#endif
}

#ifdef SAMBA_WITH_CUDA
namespace {

namespace glue = cuda_glue;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

void* stream_of(const torch::Tensor& t) { return c10::cuda::getCurrentCUDAStream(t.device().index()).stream(); }

// Saves gate and up (the inputs, alive anyway in the MLP's autograd graph), not silu(gate).
class SwiGLUCudaFunction : public torch::autograd::Function<SwiGLUCudaFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& gate_in, const torch::Tensor& up_in) {
    const c10::cuda::CUDAGuard guard(gate_in.device());
    const auto gate = gate_in.contiguous(), up = up_in.contiguous();
    auto y = new_output(gate.sizes(), gate.options());
    glue::check_status(cuda::swiglu_forward(glue::elem_type(gate.scalar_type()), gate.numel(), gate.data_ptr(),
                                            up.data_ptr(), y.data_ptr(), stream_of(gate)),
                       "swiglu forward");
    ctx->save_for_backward({gate, up});
    return {y};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &gate = saved[0], &up = saved[1];
    if (!grads[0].defined()) return {torch::Tensor(), torch::Tensor()};
    const c10::cuda::CUDAGuard guard(gate.device());
    const auto gy = grads[0].to(gate.scalar_type()).contiguous();
    auto g_gate = new_output(gate.sizes(), gate.options()), g_up = new_output(up.sizes(), up.options());
    glue::check_status(cuda::swiglu_backward(glue::elem_type(gate.scalar_type()), gate.numel(), gy.data_ptr(),
                                             gate.data_ptr(), up.data_ptr(), g_gate.data_ptr(), g_up.data_ptr(),
                                             stream_of(gate)),
                       "swiglu backward");
    return {g_gate, g_up};
  }
};

}  // namespace

torch::Tensor swiglu_cuda(const torch::Tensor& gate, const torch::Tensor& up) {
  check(swiglu_cuda_supports(gate, up), "swiglu_cuda: needs CUDA fp32/bf16 gate and up of one shape and dtype; got ",
        gate.scalar_type(), " ", gate.sizes(), " on ", gate.device(), " and ", up.scalar_type(), " ", up.sizes(),
        " on ", up.device());
  return SwiGLUCudaFunction::apply(gate, up)[0];
}

#else

torch::Tensor swiglu_cuda(const torch::Tensor&, const torch::Tensor&) {
  throw Error("swiglu_cuda: this build has no CUDA kernels (configure with a CUDA-enabled libtorch and nvcc)");
}

#endif

}  // namespace samba::kernels
