#pragma once
// Helpers for the torch glue of the CUDA kernels (compiled only with SAMBA_WITH_CUDA).
#include <torch/torch.h>

#include "cuda_types.h"
#include "samba/core/error.h"

namespace samba::kernels::cuda_glue {

inline cuda::ElemType elem_type(torch::ScalarType t) {
  return t == torch::kBFloat16 ? cuda::ElemType::kBFloat16 : cuda::ElemType::kFloat32;
}

// Kernels read views with a unit stride in the row or the time dimension; anything else
// is copied first.
inline torch::Tensor unit_stride(const torch::Tensor& t) {
  return (t.stride(2) == 1 || t.stride(1) == 1) ? t : t.contiguous();
}
// `t` converted to `dtype` (a no-op when it already is), with a unit stride.
inline torch::Tensor as_input(const torch::Tensor& t, torch::ScalarType dtype) {
  return t.defined() ? unit_stride(t.to(dtype)) : t;
}
inline torch::Tensor as_f32(const torch::Tensor& t) { return t.defined() ? t.to(torch::kFloat32).contiguous() : t; }

inline cuda::View3 view(const torch::Tensor& t) {
  if (!t.defined()) return {};
  return {t.data_ptr(), t.stride(0), t.stride(1), t.stride(2)};
}
inline cuda::MutView3 mut_view(const torch::Tensor& t) {
  if (!t.defined()) return {};
  return {t.data_ptr(), t.stride(0), t.stride(1), t.stride(2)};
}
inline const float* f32_ptr(const torch::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }
inline float* f32_mut(const torch::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

inline void check_status(cuda::Status s, const char* who) { check(s == nullptr, who, ": CUDA error: ", s ? s : ""); }

}  // namespace samba::kernels::cuda_glue
