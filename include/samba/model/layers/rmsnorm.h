#pragma once
// RMSNorm with a learnable scale, computed in fp32 (the residual stream is fp32).
#include <torch/torch.h>

namespace samba {

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  void reset_parameters();

  torch::Tensor weight;
  double eps;
};
TORCH_MODULE(RMSNorm);

// Functional form used by layers with per-head norms (GLA, RetNet): weight may be undefined.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps);

}  // namespace samba
