#include "samba/model/layers/short_conv.h"

#include <cmath>

#include "samba/core/error.h"

namespace samba {

ShortConvImpl::ShortConvImpl(int64_t channels_, int64_t kernel_) : channels(channels_), kernel(kernel_) {
  check(channels > 0 && kernel > 0, "short conv needs positive channels and kernel, got ", channels, ", ", kernel);
  weight = register_parameter("weight", torch::empty({channels, 1, kernel}));
  reset_parameters();
}

void ShortConvImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
}

torch::Tensor ShortConvImpl::forward(const torch::Tensor& x) {
  check(x.dim() == 3 && x.size(2) == channels, "short conv expects (B, T, ", channels, "), got ", x.sizes());
  const int64_t T = x.size(1);
  // Padding K - 1 on both sides and keeping the first T outputs = left padding only (causal).
  auto y = torch::conv1d(x.transpose(1, 2), weight.to(x.scalar_type()), {}, /*stride=*/1, /*padding=*/kernel - 1,
                         /*dilation=*/1, /*groups=*/channels);
  return torch::silu(y.narrow(2, 0, T)).transpose(1, 2);
}

torch::Tensor ShortConvImpl::make_state(int64_t batch, const torch::TensorOptions& options) const {
  return torch::zeros({batch, channels, kernel - 1}, options);
}

torch::Tensor ShortConvImpl::step(const torch::Tensor& x, torch::Tensor& state) {
  check(x.dim() == 3 && x.size(1) == 1 && x.size(2) == channels, "short conv step expects (B, 1, ", channels, "), got ",
        x.sizes());
  check(state.dim() == 3 && state.size(1) == channels && state.size(2) == kernel - 1,
        "short conv state must be (B, ", channels, ", ", kernel - 1, "), got ", state.sizes());
  auto window = torch::cat({state.to(x.scalar_type()), x.transpose(1, 2)}, 2);  // (B, C, K)
  auto y = (window * weight.squeeze(1).to(x.scalar_type())).sum(-1);            // (B, C)
  state = window.narrow(2, 1, kernel - 1).to(state.scalar_type());
  return torch::silu(y).unsqueeze(1);
}

}  // namespace samba
