// Torch glue of the CUDA RoPE (rope.cu). Stubs that throw without CUDA.
#include "samba/core/error.h"
#include "samba/kernels/rope.h"

#ifdef SAMBA_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "../common/cuda_glue.h"
#include "rope_cuda.h"
#endif

namespace samba::kernels {

bool rope_cuda_supports(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
#ifdef SAMBA_WITH_CUDA
  const bool x_ok = x.is_cuda() && (x.scalar_type() == torch::kFloat32 || x.scalar_type() == torch::kBFloat16) &&
                    x.dim() == 4 && x.size(3) % 2 == 0;
  auto table_ok = [&](const torch::Tensor& t) {
    return t.is_cuda() && t.device() == x.device() && t.scalar_type() == torch::kFloat32 && t.dim() == 2;
  };
  return x_ok && table_ok(cos) && table_ok(sin);
#else
  (void)x;
  (void)cos;
  (void)sin;
  return false;
#endif
}

#ifdef SAMBA_WITH_CUDA
namespace {

namespace glue = cuda_glue;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The kernel reads any strides with a contiguous head dim.
torch::Tensor head_dim_contiguous(const torch::Tensor& t) { return t.stride(3) == 1 ? t : t.contiguous(); }

cuda::RopeTensor part(const torch::Tensor& in, const torch::Tensor& out) {
  cuda::RopeTensor p;
  if (!in.defined()) return p;
  p.x = in.data_ptr();
  p.s_batch = in.stride(0);
  p.s_time = in.stride(1);
  p.s_head = in.stride(2);
  p.y = out.data_ptr();
  p.heads = static_cast<int>(in.size(2));
  return p;
}

// Rotates q and k (either may be undefined) in one launch; returns the contiguous results.
std::pair<torch::Tensor, torch::Tensor> rotate(const torch::Tensor& q, const torch::Tensor& k,
                                               const torch::Tensor& cos, const torch::Tensor& sin, int64_t offset,
                                               bool inverse) {
  const auto& any = q.defined() ? q : k;
  auto out = [](const torch::Tensor& t) { return t.defined() ? new_output(t.sizes(), t.options()) : t; };
  auto yq = out(q), yk = out(k);
  cuda::RopeArgs a;
  a.batch = any.size(0);
  a.time = any.size(1);
  a.offset = offset;
  a.d = static_cast<int>(any.size(3));
  a.type = glue::elem_type(any.scalar_type());
  a.cos = cos.data_ptr<float>();
  a.sin = sin.data_ptr<float>();
  a.table_stride = cos.stride(0);
  a.part[0] = part(q, yq);
  a.part[1] = part(k, yk);
  glue::check_status(cuda::rope_rotate(a, inverse, c10::cuda::getCurrentCUDAStream(any.device().index()).stream()),
                     inverse ? "rope backward" : "rope forward");
  return {yq, yk};
}

// q and k (k optional) -> their rotations; the tables get no gradient.
class RopeCudaFunction : public torch::autograd::Function<RopeCudaFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& q, const OptTensor& k_opt,
                               const torch::Tensor& cos_in, const torch::Tensor& sin_in, int64_t offset) {
    const c10::cuda::CUDAGuard guard(q.device());
    // Same strides for both tables (the kernel takes one row stride).
    const auto cos = cos_in.contiguous(), sin = sin_in.contiguous();
    const auto k = unwrap_optional(k_opt);
    auto [yq, yk] = rotate(head_dim_contiguous(q), k.defined() ? head_dim_contiguous(k) : k, cos, sin, offset,
                           /*inverse=*/false);
    ctx->save_for_backward({cos, sin});
    ctx->saved_data["offset"] = offset;
    ctx->saved_data["dtype"] = static_cast<int64_t>(q.scalar_type());
    // One output per rotated tensor (autograd Functions return defined outputs only).
    return k.defined() ? variable_list{yq, yk} : variable_list{yq};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto dt = static_cast<torch::ScalarType>(ctx->saved_data["dtype"].toInt());
    auto as_input = [&](const torch::Tensor& g) { return g.defined() ? head_dim_contiguous(g.to(dt)) : g; };
    const auto gq_out = as_input(grads[0]), gk_out = grads.size() > 1 ? as_input(grads[1]) : torch::Tensor();
    torch::Tensor gq, gk;
    if (gq_out.defined() || gk_out.defined()) {
      const c10::cuda::CUDAGuard guard(saved[0].device());
      std::tie(gq, gk) = rotate(gq_out, gk_out, saved[0], saved[1], ctx->saved_data["offset"].toInt(),
                                /*inverse=*/true);
    }
    return {gq, gk, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

void check_cuda_args(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin, int64_t offset) {
  check(rope_cuda_supports(x, cos, sin), "rope_cuda: needs CUDA fp32/bf16 (B, T, H, D) x with even D and fp32 ",
        "tables on its device; got x ", x.scalar_type(), " ", x.sizes(), " on ", x.device(), ", tables ",
        cos.scalar_type());
  check(offset >= 0 && cos.sizes() == sin.sizes() && cos.size(1) == x.size(3) && cos.size(0) >= offset + x.size(1),
        "rope_cuda: tables ", cos.sizes(), " do not cover positions ", offset, " .. ", offset + x.size(1) - 1,
        " of head dim ", x.size(3));
}

}  // namespace

torch::Tensor rope_cuda(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin, int64_t offset) {
  check_cuda_args(x, cos, sin, offset);
  return RopeCudaFunction::apply(x, OptTensor(), cos, sin, offset)[0];
}

std::pair<torch::Tensor, torch::Tensor> rope_qk_cuda(const torch::Tensor& q, const torch::Tensor& k,
                                                     const torch::Tensor& cos, const torch::Tensor& sin,
                                                     int64_t offset) {
  check_cuda_args(q, cos, sin, offset);
  check_cuda_args(k, cos, sin, offset);
  check(q.scalar_type() == k.scalar_type() && q.device() == k.device() && q.size(0) == k.size(0) &&
            q.size(1) == k.size(1) && q.size(3) == k.size(3),
        "rope_qk_cuda: q ", q.sizes(), " ", q.scalar_type(), " and k ", k.sizes(), " ", k.scalar_type(),
        " must share dtype, device, batch, time and head dim");
  auto out = RopeCudaFunction::apply(q, OptTensor(k), cos, sin, offset);
  return {out[0], out[1]};
}

#else

torch::Tensor rope_cuda(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&, int64_t) {
  throw Error("rope_cuda: this build has no CUDA kernels (configure with a CUDA-enabled libtorch and nvcc)");
}

std::pair<torch::Tensor, torch::Tensor> rope_qk_cuda(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                                                     const torch::Tensor&, int64_t) {
  throw Error("rope_qk_cuda: this build has no CUDA kernels (configure with a CUDA-enabled libtorch and nvcc)");
}

#endif

}  // namespace samba::kernels
