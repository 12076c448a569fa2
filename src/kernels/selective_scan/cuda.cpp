// Torch glue of the CUDA selective scan (scan.cu): conversions, allocation, the autograd
// Function. Compiled to stubs that throw in builds without CUDA kernels.
#include "samba/core/error.h"
#include "samba/kernels/selective_scan.h"

#ifdef SAMBA_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "../common/cuda_glue.h"
#include "scan_cuda.h"
#endif

namespace samba::kernels {

bool selective_scan_cuda_supports(const torch::Tensor& u, const torch::Tensor& A) {
#ifdef SAMBA_WITH_CUDA
  const auto dt = u.scalar_type();
  return u.is_cuda() && (dt == torch::kFloat32 || dt == torch::kBFloat16) && A.dim() == 2 &&
         A.size(1) <= cuda::kScanMaxState && u.dim() == 3 && u.size(0) <= 65535 && u.size(1) <= INT32_MAX &&
         u.size(2) <= INT32_MAX;
#else
  (void)u;
  (void)A;
  return false;
#endif
}

#ifdef SAMBA_WITH_CUDA
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
namespace glue = cuda_glue;

cuda::ScanArgs make_args(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A,
                         const torch::Tensor& B, const torch::Tensor& C, const torch::Tensor& D,
                         const torch::Tensor& z, const torch::Tensor& bias, bool softplus) {
  cuda::ScanArgs a;
  a.batch = static_cast<int>(u.size(0));
  a.E = static_cast<int>(u.size(1));
  a.L = static_cast<int>(u.size(2));
  a.N = static_cast<int>(A.size(1));
  a.softplus = softplus;
  a.type = glue::elem_type(u.scalar_type());
  a.u = glue::view(u);
  a.delta = glue::view(delta);
  a.z = glue::view(z);
  a.B = glue::view(B);
  a.C = glue::view(C);
  a.A = glue::f32_ptr(A);
  a.D = glue::f32_ptr(D);
  a.bias = glue::f32_ptr(bias);
  return a;
}

void* stream_of(const torch::Tensor& t) { return c10::cuda::getCurrentCUDAStream(t.device().index()).stream(); }

class SelectiveScanCudaFunction : public torch::autograd::Function<SelectiveScanCudaFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& u_in, const torch::Tensor& delta_in,
                               const torch::Tensor& A_in, const torch::Tensor& B_in, const torch::Tensor& C_in,
                               const OptTensor& D_opt, const OptTensor& z_opt, const OptTensor& bias_opt,
                               bool softplus, bool save_states) {
    const c10::cuda::CUDAGuard guard(u_in.device());
    const auto dtype = u_in.scalar_type();
    const auto u = glue::unit_stride(u_in), delta = glue::as_input(delta_in, dtype),
               B = glue::as_input(B_in, dtype), C = glue::as_input(C_in, dtype),
               z = glue::as_input(unwrap_optional(z_opt), dtype);
    const auto A = glue::as_f32(A_in), D = glue::as_f32(unwrap_optional(D_opt)),
               bias = glue::as_f32(unwrap_optional(bias_opt));
    const int64_t batch = u.size(0), E = u.size(1), L = u.size(2), N = A.size(1);
    // Channels-last memory: the Mamba layer feeds y.transpose(1, 2) to out_proj, which then
    // reads it contiguously.
    auto out = new_output({batch, L, E}, u.options()).permute({0, 2, 1});
    auto last = new_output({batch, E, N}, u.options().dtype(torch::kFloat32));
    const auto args = make_args(u, delta, A, B, C, D, z, bias, softplus);
    // Training keeps the state at every chunk start (fp32, N / kScanChunk of u's elements):
    // the backward then restarts each chunk from it instead of re-running the forward first.
    torch::Tensor states;
    if (save_states) {
      const int64_t nchunks = (L + cuda::kScanChunk - 1) / cuda::kScanChunk;
      states = new_output({batch, E, nchunks, N}, u.options().dtype(torch::kFloat32));
    }
    glue::check_status(cuda::selective_scan_forward(args, glue::mut_view(out), last.data_ptr<float>(),
                                                    glue::f32_mut(states), stream_of(u)),
                       "selective_scan forward");
    ctx->save_for_backward({u, delta, A, B, C, D, z, bias, states});
    ctx->saved_data["softplus"] = softplus;
    ctx->saved_data["dtypes"] = std::vector<int64_t>{
        static_cast<int64_t>(delta_in.scalar_type()), static_cast<int64_t>(A_in.scalar_type()),
        static_cast<int64_t>(B_in.scalar_type()), static_cast<int64_t>(C_in.scalar_type()),
        D_opt ? static_cast<int64_t>(D_opt->scalar_type()) : -1, z_opt ? static_cast<int64_t>(z_opt->scalar_type()) : -1,
        bias_opt ? static_cast<int64_t>(bias_opt->scalar_type()) : -1};
    ctx->mark_non_differentiable({last});
    return {out, last};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    const auto &u = saved[0], &delta = saved[1], &A = saved[2], &B = saved[3], &C = saved[4], &D = saved[5],
               &z = saved[6], &bias = saved[7], &states = saved[8];
    const c10::cuda::CUDAGuard guard(u.device());
    const bool softplus = ctx->saved_data["softplus"].toBool();
    const auto dtypes = ctx->saved_data["dtypes"].toIntVector();
    const auto dtype = u.scalar_type();
    auto gout = grad_outputs[0];
    if (!gout.defined()) gout = torch::zeros_like(u);
    gout = glue::as_input(gout, dtype);
    // The kernels read grad_out in the layout of u: channels contiguous when u is (the Mamba
    // layer's), which the pipelined backward needs.
    if (u.stride(1) == 1 && gout.stride(1) != 1) gout = gout.transpose(1, 2).contiguous().transpose(1, 2);
    const int64_t batch = u.size(0), E = u.size(1), L = u.size(2), N = A.size(1);
    // Gradients in the layout of their inputs (empty_like keeps a dense input's strides).
    auto like = [](const torch::Tensor& t) {
      return poison_outputs() ? torch::full_like(t, std::numeric_limits<double>::quiet_NaN()) : torch::empty_like(t);
    };
    auto gu = like(u), gdelta = like(delta);
    auto gz = z.defined() ? like(z) : torch::Tensor();
    auto f32 = u.options().dtype(torch::kFloat32);
    auto gA = new_output({E, N}, f32);
    auto gB = new_output({batch, L, N}, f32), gC = new_output({batch, L, N}, f32);
    auto gD = D.defined() ? new_output({E}, f32) : torch::Tensor();
    auto gbias = bias.defined() ? new_output({E}, f32) : torch::Tensor();
    const auto args = make_args(u, delta, A, B, C, D, z, bias, softplus);
    auto workspace =
        torch::empty({static_cast<int64_t>(cuda::selective_scan_backward_workspace(args, states.defined()))}, f32);
    cuda::ScanGrads g;
    g.u = glue::mut_view(gu);
    g.delta = glue::mut_view(gdelta);
    g.z = glue::mut_view(gz);
    g.A = gA.data_ptr<float>();
    g.B = gB.data_ptr<float>();
    g.C = gC.data_ptr<float>();
    g.D = glue::f32_mut(gD);
    g.bias = glue::f32_mut(gbias);
    glue::check_status(cuda::selective_scan_backward(args, glue::view(gout), g, glue::f32_ptr(states),
                                                     workspace.data_ptr<float>(), stream_of(u)),
                       "selective_scan backward");
    auto as = [](const torch::Tensor& t, int64_t dt) {
      return dt < 0 ? torch::Tensor() : t.to(static_cast<torch::ScalarType>(dt));
    };
    return {gu,
            as(gdelta, dtypes[0]),
            as(gA, dtypes[1]),
            as(gB.transpose(1, 2), dtypes[2]),
            as(gC.transpose(1, 2), dtypes[3]),
            as(gD, dtypes[4]),
            z.defined() ? as(gz, dtypes[5]) : torch::Tensor(),
            as(gbias, dtypes[6]),
            torch::Tensor(),
            torch::Tensor()};
  }
};

}  // namespace

std::tuple<torch::Tensor, torch::Tensor> selective_scan_cuda(
    const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A, const torch::Tensor& B,
    const torch::Tensor& C, const torch::Tensor& D, const torch::Tensor& z, const torch::Tensor& delta_bias,
    bool delta_softplus) {
  check_selective_scan_args(u, delta, A, B, C, D, z, delta_bias);
  check(selective_scan_cuda_supports(u, A), "selective_scan_cuda: needs CUDA fp32/bf16 u and N <= ",
        cuda::kScanMaxState, "; got ", u.scalar_type(), " on ", u.device(), ", N = ", A.size(1));
  bool any_grad = false;
  for (const auto* t : {&u, &delta, &A, &B, &C, &D, &z, &delta_bias})
    any_grad = any_grad || (t->defined() && t->requires_grad());
  const bool save_states = torch::GradMode::is_enabled() && any_grad;
  auto outs = SelectiveScanCudaFunction::apply(u, delta, A, B, C, wrap_optional(D), wrap_optional(z),
                                               wrap_optional(delta_bias), delta_softplus, save_states);
  return {outs[0], outs[1]};
}

#else

std::tuple<torch::Tensor, torch::Tensor> selective_scan_cuda(const torch::Tensor&, const torch::Tensor&,
                                                             const torch::Tensor&, const torch::Tensor&,
                                                             const torch::Tensor&, const torch::Tensor&,
                                                             const torch::Tensor&, const torch::Tensor&, bool) {
  throw Error("selective_scan_cuda: this build has no CUDA kernels (configure with a CUDA-enabled libtorch and nvcc)");
}

#endif

}  // namespace samba::kernels
