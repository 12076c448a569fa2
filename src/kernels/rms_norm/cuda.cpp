// Torch glue of the CUDA RMSNorm + residual add (rms_norm.cu). Stubs that throw without CUDA.
#include "samba/core/error.h"
#include "samba/kernels/rms_norm.h"

#ifdef SAMBA_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "../common/cuda_glue.h"
#include "rms_norm_cuda.h"
#endif

namespace samba::kernels {

bool rms_norm_residual_cuda_supports(const torch::Tensor& x, const torch::Tensor& residual,
                                     torch::ScalarType out_dtype) {
#ifdef SAMBA_WITH_CUDA
  auto ok = [](torch::ScalarType t) { return t == torch::kFloat32 || t == torch::kBFloat16; };
  return x.is_cuda() && ok(x.scalar_type()) && ok(out_dtype) && x.dim() >= 1 && x.size(-1) <= 48 * 1024 &&
         (!residual.defined() || (residual.is_cuda() && residual.scalar_type() == torch::kFloat32));
#else
  (void)x;
  (void)residual;
  (void)out_dtype;
  return false;
#endif
}

#ifdef SAMBA_WITH_CUDA
namespace {

namespace glue = cuda_glue;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

cuda::RmsNormArgs make_args(const torch::Tensor& x, const torch::Tensor& residual, const torch::Tensor& w, double eps,
                            torch::ScalarType out_dtype) {
  cuda::RmsNormArgs a;
  a.d = static_cast<int>(x.size(-1));
  a.rows = x.numel() / std::max<int64_t>(1, a.d);
  a.eps = static_cast<float>(eps);
  a.x_type = glue::elem_type(x.scalar_type());
  a.y_type = glue::elem_type(out_dtype);
  a.x = x.data_ptr();
  a.residual = glue::f32_ptr(residual);
  a.weight = glue::f32_ptr(w);
  return a;
}

void* stream_of(const torch::Tensor& t) { return c10::cuda::getCurrentCUDAStream(t.device().index()).stream(); }

class RmsNormResidualCudaFunction : public torch::autograd::Function<RmsNormResidualCudaFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& x_in, const OptTensor& res_opt,
                               const torch::Tensor& w_in, double eps, int64_t out_dtype) {
    const c10::cuda::CUDAGuard guard(x_in.device());
    const auto x = x_in.contiguous();
    const auto res = glue::as_f32(unwrap_optional(res_opt));
    const auto w = glue::as_f32(w_in);
    const auto ydt = static_cast<torch::ScalarType>(out_dtype);
    auto rout = new_output(x.sizes(), x.options().dtype(torch::kFloat32));
    auto y = new_output(x.sizes(), x.options().dtype(ydt));
    const auto a = make_args(x, res, w, eps, ydt);
    auto rstd = new_output({a.rows}, x.options().dtype(torch::kFloat32));
    glue::check_status(cuda::rms_norm_forward(a, rout.data_ptr<float>(), y.data_ptr(), rstd.data_ptr<float>(),
                                              stream_of(x)),
                       "rms_norm_residual forward");
    ctx->save_for_backward({rout, rstd, w});
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["x_dtype"] = static_cast<int64_t>(x_in.scalar_type());
    ctx->saved_data["w_dtype"] = static_cast<int64_t>(w_in.scalar_type());
    ctx->saved_data["out_dtype"] = out_dtype;
    ctx->saved_data["has_res"] = res_opt.has_value();
    return {y, rout};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &rout = saved[0], &rstd = saved[1], &w = saved[2];
    const c10::cuda::CUDAGuard guard(rout.device());
    const auto xdt = static_cast<torch::ScalarType>(ctx->saved_data["x_dtype"].toInt());
    const auto ydt = static_cast<torch::ScalarType>(ctx->saved_data["out_dtype"].toInt());
    auto gy = grads[0].defined() ? grads[0].to(ydt).contiguous() : torch::zeros_like(rout, rout.options().dtype(ydt));
    auto grout = grads[1].defined() ? grads[1].to(torch::kFloat32).contiguous() : torch::Tensor();
    // The kernel only reads x's dtype and shape from the arguments; rout stands in for x.
    auto a = make_args(rout, torch::Tensor(), w, ctx->saved_data["eps"].toDouble(), ydt);
    a.x_type = glue::elem_type(xdt);
    const bool has_res = ctx->saved_data["has_res"].toBool();
    auto gx = new_output(rout.sizes(), rout.options().dtype(xdt));
    auto gres = has_res ? new_output(rout.sizes(), rout.options()) : torch::Tensor();
    auto gw = new_output({a.d}, rout.options());
    auto ws = torch::empty({static_cast<int64_t>(cuda::rms_norm_backward_workspace(a))}, rout.options());
    glue::check_status(cuda::rms_norm_backward(a, rout.data_ptr<float>(), rstd.data_ptr<float>(), gy.data_ptr(),
                                               glue::f32_ptr(grout), gx.data_ptr(), glue::f32_mut(gres),
                                               gw.data_ptr<float>(), ws.data_ptr<float>(), stream_of(rout)),
                       "rms_norm_residual backward");
    const auto wdt = static_cast<torch::ScalarType>(ctx->saved_data["w_dtype"].toInt());
    return {gx, gres, gw.to(wdt), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

std::tuple<torch::Tensor, torch::Tensor> rms_norm_residual_cuda(const torch::Tensor& x, const torch::Tensor& residual,
                                                                const torch::Tensor& weight, double eps,
                                                                torch::ScalarType out_dtype) {
  check(rms_norm_residual_cuda_supports(x, residual, out_dtype),
        "rms_norm_residual_cuda: needs CUDA fp32/bf16 x, an fp32 residual and an fp32/bf16 output; got x ",
        x.scalar_type(), " on ", x.device());
  check(weight.dim() == 1 && weight.size(0) == x.size(-1), "rms_norm_residual_cuda: weight must be (", x.size(-1),
        "), got ", weight.sizes());
  if (residual.defined()) check(residual.sizes() == x.sizes(), "rms_norm_residual_cuda: residual must match x");
  auto outs = RmsNormResidualCudaFunction::apply(x, wrap_optional(residual), weight, eps,
                                                 static_cast<int64_t>(out_dtype));
  return {outs[0], outs[1]};
}

#else

std::tuple<torch::Tensor, torch::Tensor> rms_norm_residual_cuda(const torch::Tensor&, const torch::Tensor&,
                                                                const torch::Tensor&, double, torch::ScalarType) {
  throw Error("rms_norm_residual_cuda: this build has no CUDA kernels (configure with a CUDA-enabled libtorch and nvcc)");
}

#endif

}  // namespace samba::kernels
