// Torch glue of the CUDA causal conv1d (conv.cu). Stubs that throw in builds without CUDA.
#include "samba/core/error.h"
#include "samba/kernels/causal_conv1d.h"

#ifdef SAMBA_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "../common/cuda_glue.h"
#include "conv_cuda.h"
#endif

namespace samba::kernels {

bool causal_conv1d_cuda_supports(const torch::Tensor& x, const torch::Tensor& weight) {
#ifdef SAMBA_WITH_CUDA
  const auto dt = x.scalar_type();
  return x.is_cuda() && (dt == torch::kFloat32 || dt == torch::kBFloat16) && x.dim() == 3 && weight.dim() == 2 &&
         weight.size(1) >= 2 && weight.size(1) <= cuda::kConvMaxWidth && x.size(0) <= 65535 && x.size(2) <= INT32_MAX;
#else
  (void)x;
  (void)weight;
  return false;
#endif
}

#ifdef SAMBA_WITH_CUDA
namespace {

namespace glue = cuda_glue;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

cuda::ConvArgs make_args(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b,
                         const torch::Tensor& state, bool silu) {
  cuda::ConvArgs a;
  a.batch = static_cast<int>(x.size(0));
  a.C = static_cast<int>(x.size(1));
  a.L = static_cast<int>(x.size(2));
  a.K = static_cast<int>(w.size(1));
  a.silu = silu;
  a.type = glue::elem_type(x.scalar_type());
  a.x = glue::view(x);
  a.weight = glue::f32_ptr(w);
  a.bias = glue::f32_ptr(b);
  a.initial_state = glue::f32_ptr(state);
  return a;
}

void* stream_of(const torch::Tensor& t) { return c10::cuda::getCurrentCUDAStream(t.device().index()).stream(); }

class CausalConv1dCudaFunction : public torch::autograd::Function<CausalConv1dCudaFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x_in, const torch::Tensor& w_in,
                               const OptTensor& b_opt, const OptTensor& state_opt, bool silu) {
    const c10::cuda::CUDAGuard guard(x_in.device());
    const auto x = glue::unit_stride(x_in);
    const auto w = glue::as_f32(w_in), b = glue::as_f32(unwrap_optional(b_opt)),
               state = glue::as_f32(unwrap_optional(state_opt));
    const int64_t batch = x.size(0), C = x.size(1), L = x.size(2);
    // Channels-last like the input the Mamba layer gives (and x_proj reads it contiguously).
    auto y = x.stride(1) == 1 ? new_output({batch, L, C}, x.options()).permute({0, 2, 1})
                              : new_output({batch, C, L}, x.options());
    glue::check_status(cuda::causal_conv1d_forward(make_args(x, w, b, state, silu), glue::mut_view(y), stream_of(x)),
                       "causal_conv1d forward");
    ctx->save_for_backward({x, w, b, state});
    ctx->saved_data["silu"] = silu;
    ctx->saved_data["w_dtype"] = static_cast<int64_t>(w_in.scalar_type());
    ctx->saved_data["b_dtype"] = b_opt ? static_cast<int64_t>(b_opt->scalar_type()) : int64_t{-1};
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w = saved[1], &b = saved[2], &state = saved[3];
    const c10::cuda::CUDAGuard guard(x.device());
    const auto args = make_args(x, w, b, state, ctx->saved_data["silu"].toBool());
    auto gy = glue::as_input(grad_outputs[0], x.scalar_type());
    auto gx = poison_outputs() ? torch::full_like(x, std::numeric_limits<double>::quiet_NaN()) : torch::empty_like(x);
    auto f32 = x.options().dtype(torch::kFloat32);
    auto gw = new_output(w.sizes(), f32);
    auto gb = b.defined() ? new_output(b.sizes(), f32) : torch::Tensor();
    auto ws = torch::empty({static_cast<int64_t>(cuda::causal_conv1d_backward_workspace(args))}, f32);
    glue::check_status(cuda::causal_conv1d_backward(args, glue::view(gy), glue::mut_view(gx), gw.data_ptr<float>(),
                                                    glue::f32_mut(gb), ws.data_ptr<float>(), stream_of(x)),
                       "causal_conv1d backward");
    const int64_t b_dtype = ctx->saved_data["b_dtype"].toInt();
    return {gx, gw.to(static_cast<torch::ScalarType>(ctx->saved_data["w_dtype"].toInt())),
            b_dtype < 0 ? torch::Tensor() : gb.to(static_cast<torch::ScalarType>(b_dtype)), torch::Tensor(),
            torch::Tensor()};
  }
};

}  // namespace

torch::Tensor causal_conv1d_cuda(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                                 bool silu, const torch::Tensor& initial_state) {
  check(causal_conv1d_cuda_supports(x, weight), "causal_conv1d_cuda: needs CUDA fp32/bf16 x (batch, C, L) and K in 2..",
        cuda::kConvMaxWidth, "; got ", x.scalar_type(), " on ", x.device(), ", weight ", weight.sizes());
  check(weight.size(0) == x.size(1), "causal_conv1d_cuda: weight ", weight.sizes(), " does not match C = ", x.size(1));
  const torch::Tensor state = initial_state.defined() ? initial_state.detach() : initial_state;
  return CausalConv1dCudaFunction::apply(x, weight, wrap_optional(bias), wrap_optional(state), silu);
}

#else

torch::Tensor causal_conv1d_cuda(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&, bool,
                                 const torch::Tensor&) {
  throw Error("causal_conv1d_cuda: this build has no CUDA kernels (configure with a CUDA-enabled libtorch and nvcc)");
}

#endif

}  // namespace samba::kernels
