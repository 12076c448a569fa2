// Depthwise causal conv1d on torch's conv1d: left padding by K-1 (or the decoding state)
// makes it causal, groups = C makes it depthwise. The CPU path and the CUDA kernel's oracle;
// also the dispatch and the decoding helpers.
#include "samba/core/error.h"
#include "samba/kernels/causal_conv1d.h"

namespace samba::kernels {
namespace {

void check_weight(const torch::Tensor& weight, const torch::Tensor& bias, int64_t channels, const char* who) {
  check(weight.dim() == 2 && weight.size(0) == channels, who, ": weight must be (C=", channels, ", K), got ",
        weight.sizes());
  if (bias.defined()) check(bias.dim() == 1 && bias.size(0) == channels, who, ": bias must be (C=", channels, "), got ", bias.sizes());
}

void check_conv_args(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                     const torch::Tensor& initial_state) {
  check(x.dim() == 3, "causal_conv1d: x must be (batch, C, L), got ", x.sizes());
  check_weight(weight, bias, x.size(1), "causal_conv1d");
  if (initial_state.defined())
    check(initial_state.dim() == 3 && initial_state.size(0) == x.size(0) && initial_state.size(1) == x.size(1) &&
              initial_state.size(2) == weight.size(1) - 1,
          "causal_conv1d: initial_state must be (batch, C, K-1) = (", x.size(0), ", ", x.size(1), ", ",
          weight.size(1) - 1, "), got ", initial_state.sizes());
}

}  // namespace

torch::Tensor causal_conv1d_reference(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                                      bool silu, const torch::Tensor& initial_state) {
  check_conv_args(x, weight, bias, initial_state);
  const int64_t C = x.size(1);
  const int64_t K = weight.size(1);
  auto padded = initial_state.defined() ? torch::cat({initial_state.detach().to(x.scalar_type()), x}, 2)
                                        : torch::constant_pad_nd(x, {K - 1, 0});
  auto w = weight.to(x.scalar_type()).unsqueeze(1);  // (C, 1, K), conv1d's depthwise layout
  auto b = bias.defined() ? bias.to(x.scalar_type()) : bias;
  // Explicit IntArrayRefs: a literal 0 padding is ambiguous with the string overload.
  const int64_t one = 1, zero = 0;
  auto y = torch::conv1d(padded, w, b, /*stride=*/torch::IntArrayRef(one), /*padding=*/torch::IntArrayRef(zero),
                         /*dilation=*/torch::IntArrayRef(one), /*groups=*/C);
  return silu ? torch::silu(y) : y;
}

namespace {
torch::Tensor dispatch_conv(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, bool silu,
                            const torch::Tensor& initial_state) {
  check_conv_args(x, weight, bias, initial_state);
  if (!use_reference_kernels() && causal_conv1d_cuda_supports(x, weight))
    return causal_conv1d_cuda(x, weight, bias, silu, initial_state);
  return causal_conv1d_reference(x, weight, bias, silu, initial_state);
}
}  // namespace

torch::Tensor causal_conv1d(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, bool silu) {
  return dispatch_conv(x, weight, bias, silu, {});
}

std::tuple<torch::Tensor, torch::Tensor> causal_conv1d_with_state(const torch::Tensor& x, const torch::Tensor& weight,
                                                                  const torch::Tensor& bias, bool silu,
                                                                  const torch::Tensor& initial_state) {
  auto y = dispatch_conv(x, weight, bias, silu, initial_state);
  torch::Tensor state;
  {
    torch::NoGradGuard no_grad;
    const auto history = initial_state.defined() ? torch::cat({initial_state.to(x.scalar_type()), x.detach()}, 2)
                                                 : x.detach();
    state = causal_conv1d_final_state(history, weight.size(1));
  }
  return {y, state};
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
