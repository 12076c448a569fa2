// Torch glue of the CUDA softmax cross-entropy (xent.cu). Stubs that throw without CUDA.
#include "samba/core/error.h"
#include "xent_glue.h"

#ifdef SAMBA_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "../common/cuda_glue.h"
#include "xent_cuda.h"
#endif

namespace samba::kernels {

bool softmax_xent_cuda_supports(torch::Device device, torch::ScalarType dtype) {
#ifdef SAMBA_WITH_CUDA
  return device.is_cuda() && (dtype == torch::kFloat32 || dtype == torch::kBFloat16);
#else
  (void)device;
  (void)dtype;
  return false;
#endif
}

#ifdef SAMBA_WITH_CUDA

void softmax_xent_inplace_cuda(const torch::Tensor& logits, const torch::Tensor& targets, int64_t ignore_index,
                               const torch::Tensor& row_loss) {
  check(softmax_xent_cuda_supports(logits.device(), logits.scalar_type()) && logits.dim() == 2 &&
            logits.is_contiguous(),
        "softmax_xent_inplace_cuda: needs contiguous (rows, V) fp32/bf16 CUDA logits, got ", logits.scalar_type(), " ",
        logits.sizes(), " on ", logits.device());
  const int64_t rows = logits.size(0);
  check(targets.scalar_type() == torch::kLong && targets.numel() == rows && targets.device() == logits.device(),
        "softmax_xent_inplace_cuda: targets must be int64 (", rows, ") on ", logits.device(), ", got ",
        targets.scalar_type(), " ", targets.sizes(), " on ", targets.device());
  check(row_loss.scalar_type() == torch::kFloat32 && row_loss.numel() == rows && row_loss.is_contiguous() &&
            row_loss.device() == logits.device(),
        "softmax_xent_inplace_cuda: row_loss must be contiguous fp32 (", rows, ") on ", logits.device());
  const c10::cuda::CUDAGuard guard(logits.device());
  const auto t = targets.reshape({-1}).contiguous();
  cuda::XentArgs a;
  a.rows = rows;
  a.vocab = logits.size(1);
  a.ignore_index = ignore_index;
  a.type = cuda_glue::elem_type(logits.scalar_type());
  a.logits = logits.data_ptr();
  a.targets = t.data_ptr<int64_t>();
  void* stream = c10::cuda::getCurrentCUDAStream(logits.device().index()).stream();
  cuda_glue::check_status(cuda::softmax_xent_inplace(a, row_loss.data_ptr<float>(), stream),
                          "softmax_xent_inplace_cuda");
}

#else

void softmax_xent_inplace_cuda(const torch::Tensor&, const torch::Tensor&, int64_t, const torch::Tensor&) {
  throw Error(
      "softmax_xent_inplace_cuda: this build has no CUDA kernels (configure with a CUDA-enabled libtorch and nvcc)");
}

#endif

}  // namespace samba::kernels
