// Chunked linear + cross-entropy with the gradients formed in the forward pass (see the
// header). The matmuls are libtorch's; the softmax, loss and logits gradient between them run
// in one CUDA kernel on the GPU (xent.cu, in place over the logits) and as libtorch ops
// elsewhere, which is also the reference for the kernel.
#include "samba/core/error.h"
#include "samba/kernels/linear_cross_entropy.h"
#include "xent_glue.h"

namespace samba::kernels {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

void check_args(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& targets) {
  check(hidden.defined() && hidden.dim() >= 1, "linear_cross_entropy: hidden must be (..., d)");
  check(weight.dim() == 2 && weight.size(1) == hidden.size(-1), "linear_cross_entropy: weight must be (V, d=",
        hidden.size(-1), "), got ", weight.sizes());
  check(targets.scalar_type() == torch::kLong && targets.numel() * hidden.size(-1) == hidden.numel(),
        "linear_cross_entropy: targets must be int64 with one entry per hidden row; got ", targets.scalar_type(), " ",
        targets.sizes(), " for hidden ", hidden.sizes());
}

// d(sum of the chunk's losses)/d logits = softmax - one_hot(target), zero on ignored rows, in
// the logits' dtype; the chunk's loss is added to loss_sum. Softmax and loss in fp32.
torch::Tensor logits_grad_libtorch(const torch::Tensor& logits_mm, const torch::Tensor& targets,
                                   const torch::Tensor& valid, torch::Tensor& loss_sum) {
  const auto logits = logits_mm.to(torch::kFloat32);
  const auto tc = targets.masked_fill(valid.logical_not(), 0).unsqueeze(1);
  const auto vc = valid.to(torch::kFloat32).unsqueeze(1);
  const auto lse = torch::logsumexp(logits, 1, /*keepdim=*/true);
  loss_sum += ((lse - logits.gather(1, tc)) * vc).sum();
  // The one-hot comes from a comparison, not scatter_add_ (atomics on CUDA, refused in
  // deterministic mode).
  const auto vocab_ids = torch::arange(logits.size(1), targets.options()).unsqueeze(0);  // (1, V)
  auto g = (logits - lse).exp_();
  g.sub_(vocab_ids.eq(tc).to(torch::kFloat32));
  g.mul_(vc);
  return g.to(logits_mm.scalar_type());
}

// The chunked pass: the mean loss's numerator and count (on the device: no host sync) and,
// with `grads`, the summed gradients of the loss w.r.t. hidden rows and weight (fp32).
struct ChunkedResult {
  torch::Tensor loss_sum, count, grad_h, grad_w;
};
ChunkedResult chunked_pass(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& targets,
                           int64_t ignore_index, int64_t chunk, bool grads) {
  const int64_t d = hidden.size(-1), V = weight.size(0);
  const auto h = hidden.reshape({-1, d});
  const auto t = targets.reshape({-1});
  const int64_t n = h.size(0);
  // The matmuls run in the activations' dtype on the GPU. On the CPU a bf16 matmul buys no
  // speed and, on CPUs without bf16 instructions, libtorch's fallback loses precision (seen:
  // 5.6% error in the hidden gradient on an AMD EPYC against 2% elsewhere): fp32 there.
  const auto mm_type = (h.is_cuda() || h.scalar_type() == torch::kFloat64) ? h.scalar_type() : torch::kFloat32;
  const auto hm = h.to(mm_type);
  const auto w = weight.to(mm_type);
  const auto f32 = h.options().dtype(torch::kFloat32);
  const auto valid = t.ne(ignore_index);
  ChunkedResult r;
  if (grads) {
    r.grad_h = torch::empty_like(h);
    r.grad_w = torch::zeros({V, d}, f32);
  }
  if (chunk <= 0) chunk = std::max<int64_t>(1, (int64_t{1} << 27) / std::max<int64_t>(1, V));
  const bool kernel = softmax_xent_cuda_supports(hm.device(), mm_type);
  // The kernel's per-row losses, summed once at the end; the libtorch path sums per chunk.
  const auto row_loss = kernel ? new_output({n}, f32) : torch::Tensor();
  r.loss_sum = torch::zeros({}, f32);
  for (int64_t s = 0; s < n; s += chunk) {
    const int64_t len = std::min(chunk, n - s);
    const auto hc = hm.narrow(0, s, len);
    auto logits = torch::matmul(hc, w.t());  // (len, V) in mm_type
    torch::Tensor gd;
    if (kernel) {
      softmax_xent_inplace_cuda(logits, t.narrow(0, s, len), ignore_index, row_loss.narrow(0, s, len));
      gd = logits;
    } else {
      gd = logits_grad_libtorch(logits, t.narrow(0, s, len), valid.narrow(0, s, len), r.loss_sum);
    }
    if (!grads) continue;  // the loss only (evaluation): one matmul per chunk instead of three
    r.grad_h.narrow(0, s, len).copy_(torch::matmul(gd, w));
    r.grad_w.add_(torch::matmul(gd.t(), hc).to(torch::kFloat32));
  }
  if (kernel) r.loss_sum = row_loss.sum();
  r.count = valid.sum().to(torch::kFloat32);
  return r;
}

class LinearCrossEntropyFunction : public torch::autograd::Function<LinearCrossEntropyFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& hidden, const torch::Tensor& weight,
                               const torch::Tensor& targets, int64_t ignore_index, int64_t chunk) {
    auto r = chunked_pass(hidden, weight, targets, ignore_index, chunk, /*grads=*/true);
    ctx->save_for_backward({r.grad_h, r.grad_w, r.count});
    ctx->saved_data["hidden_sizes"] = hidden.sizes().vec();
    ctx->saved_data["weight_dtype"] = static_cast<int64_t>(weight.scalar_type());
    return r.loss_sum / r.count;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto scale = grads[0].to(torch::kFloat32) / saved[2];
    const auto wdt = static_cast<torch::ScalarType>(ctx->saved_data["weight_dtype"].toInt());
    auto gh = (saved[0] * scale.to(saved[0].scalar_type())).reshape(ctx->saved_data["hidden_sizes"].toIntVector());
    auto gw = (saved[1] * scale).to(wdt);
    return {gh, gw, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor linear_cross_entropy_reference(const torch::Tensor& hidden, const torch::Tensor& weight,
                                             const torch::Tensor& targets, int64_t ignore_index) {
  check_args(hidden, weight, targets);
  auto logits = torch::nn::functional::linear(hidden, weight.to(hidden.scalar_type())).to(torch::kFloat32);
  if (hidden.scalar_type() == torch::kFloat64) logits = logits.to(torch::kFloat64);
  return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}),
                                              torch::nn::functional::CrossEntropyFuncOptions().ignore_index(ignore_index));
}

torch::Tensor linear_cross_entropy(const torch::Tensor& hidden, const torch::Tensor& weight,
                                   const torch::Tensor& targets, int64_t ignore_index, int64_t chunk) {
  check_args(hidden, weight, targets);
  if (use_reference_kernels() || hidden.scalar_type() == torch::kFloat64)
    return linear_cross_entropy_reference(hidden, weight, targets, ignore_index);
  // No gradient wanted (evaluation, no_grad): skip the two gradient matmuls.
  if (!torch::GradMode::is_enabled() || !(hidden.requires_grad() || weight.requires_grad())) {
    const auto r = chunked_pass(hidden, weight, targets, ignore_index, chunk, /*grads=*/false);
    return r.loss_sum / r.count;
  }
  return LinearCrossEntropyFunction::apply(hidden, weight, targets, ignore_index, chunk);
}

}  // namespace samba::kernels
