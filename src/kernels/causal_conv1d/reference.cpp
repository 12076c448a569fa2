// Depthwise causal conv1d on torch's conv1d: left padding by K-1 makes it causal, groups = C
// makes it depthwise. This is the CPU path and the oracle for a future CUDA kernel.
#include "samba/core/error.h"
#include "samba/kernels/causal_conv1d.h"

namespace samba::kernels {
namespace {

void check_weight(const torch::Tensor& weight, const torch::Tensor& bias, int64_t channels, const char* who) {
  check(weight.dim() == 2 && weight.size(0) == channels, who, ": weight must be (C=", channels, ", K), got ",
        weight.sizes());
  if (bias.defined()) check(bias.dim() == 1 && bias.size(0) == channels, who, ": bias must be (C=", channels, "), got ", bias.sizes());
}

}  // namespace

torch::Tensor causal_conv1d(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, bool silu) {
  check(x.dim() == 3, "causal_conv1d: x must be (batch, C, L), got ", x.sizes());
  const int64_t C = x.size(1);
  check_weight(weight, bias, C, "causal_conv1d");
  const int64_t K = weight.size(1);
  auto padded = torch::constant_pad_nd(x, {K - 1, 0});
  auto w = weight.to(x.scalar_type()).unsqueeze(1);  // (C, 1, K), conv1d's depthwise layout
  auto b = bias.defined() ? bias.to(x.scalar_type()) : bias;
  // Explicit IntArrayRefs: a literal 0 padding is ambiguous with the string overload.
  const int64_t one = 1, zero = 0;
  auto y = torch::conv1d(padded, w, b, /*stride=*/torch::IntArrayRef(one), /*padding=*/torch::IntArrayRef(zero),
                         /*dilation=*/torch::IntArrayRef(one), /*groups=*/C);
  return silu ? torch::silu(y) : y;
}

torch::Tensor causal_conv1d_final_state(const torch::Tensor& x, int64_t kernel_size) {
  check(x.dim() == 3, "causal_conv1d_final_state: x must be (batch, C, L), got ", x.sizes());
  check(kernel_size >= 1, "causal_conv1d_final_state: kernel size must be >= 1");
  const int64_t keep = kernel_size - 1, L = x.size(2);
  if (L >= keep) return x.narrow(2, L - keep, keep).contiguous();
  return torch::constant_pad_nd(x, {keep - L, 0});
}

torch::Tensor causal_conv1d_update(const torch::Tensor& x, torch::Tensor& state, const torch::Tensor& weight,
                                   const torch::Tensor& bias, bool silu) {
  check(x.dim() == 2, "causal_conv1d_update: x must be (batch, C), got ", x.sizes());
  const int64_t batch = x.size(0), C = x.size(1);
  check_weight(weight, bias, C, "causal_conv1d_update");
  const int64_t K = weight.size(1);
  check(state.dim() == 3 && state.size(0) == batch && state.size(1) == C && state.size(2) == K - 1,
        "causal_conv1d_update: state must be (batch=", batch, ", C=", C, ", K-1=", K - 1, "), got ", state.sizes());
  auto window = torch::cat({state.to(x.scalar_type()), x.unsqueeze(-1)}, -1);  // (batch, C, K)
  auto y = (window * weight.to(x.scalar_type())).sum(-1);
  if (bias.defined()) y = y + bias.to(x.scalar_type());
  {
    // A decoding buffer: keep no autograd history across steps.
    torch::NoGradGuard no_grad;
    state.copy_(window.narrow(2, 1, K - 1).detach());
  }
  return silu ? torch::silu(y) : y;
}

}  // namespace samba::kernels
