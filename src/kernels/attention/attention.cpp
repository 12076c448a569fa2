#include "samba/kernels/attention.h"

#include <torch/version.h>

#include <algorithm>
#include <limits>
#include <optional>

#include "samba/core/error.h"

// FlashAttention-2 with a sliding window is exposed by ATen from torch 2.x on; libtorch 1.13
// (the CPU machine) has no such entry point, so the whole path is compiled out there.
#if defined(SAMBA_WITH_CUDA) && TORCH_VERSION_MAJOR >= 2
#define SAMBA_HAVE_FLASH_ATTENTION 1
#include <ATen/ops/_flash_attention_backward.h>
#include <ATen/ops/_flash_attention_forward.h>
#else
#define SAMBA_HAVE_FLASH_ATTENTION 0
#endif

namespace samba {
namespace {

void check_layout(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  check(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
        "attention expects q (B, Tq, H, D) and k, v (B, Tk, Hk, D); got q ", q.sizes(), ", k ", k.sizes(), ", v ",
        v.sizes());
  check(k.sizes() == v.sizes(), "attention: k ", k.sizes(), " and v ", v.sizes(), " must have the same shape");
  check(q.size(0) == k.size(0) && q.size(3) == k.size(3), "attention: q ", q.sizes(), " and k ", k.sizes(),
        " disagree on batch or head_dim");
  check(k.size(2) > 0 && q.size(2) % k.size(2) == 0, "attention: kv heads (", k.size(2), ") must divide query heads (",
        q.size(2), ")");
  check(q.size(1) <= k.size(1), "attention: more queries (", q.size(1), ") than keys (", k.size(1),
        "); queries are the last Tq positions of the keys");
}

// Window <= 0 or covering every key means full causal attention; normalise to 0.
int64_t effective_window(int64_t window, int64_t n_keys) { return (window <= 0 || window >= n_keys) ? 0 : window; }

#if SAMBA_HAVE_FLASH_ATTENTION
std::optional<int64_t> flash_window_left(int64_t window) {
  if (window <= 0) return std::nullopt;  // unbounded to the left
  return window - 1;                     // FA2 counts the keys strictly before the query
}

class FlashAttentionFunction : public torch::autograd::Function<FlashAttentionFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor q, torch::Tensor k, torch::Tensor v,
                               int64_t window, double scale) {
    q = q.contiguous();
    k = k.contiguous();
    v = v.contiguous();
    const int64_t tq = q.size(1), tk = k.size(1);
    auto result = at::_flash_attention_forward(q, k, v, std::nullopt, std::nullopt, tq, tk, /*dropout_p=*/0.0,
                                               /*is_causal=*/true, /*return_debug_mask=*/false, scale,
                                               flash_window_left(window), /*window_size_right=*/int64_t{0});
    torch::Tensor out = std::get<0>(result);
    torch::Tensor lse = std::get<1>(result);
    torch::Tensor rng_state = std::get<2>(result);
    torch::Tensor unused = std::get<3>(result);
    ctx->save_for_backward({q, k, v, out, lse, rng_state, unused});
    ctx->saved_data["window"] = window;
    ctx->saved_data["scale"] = scale;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    const torch::Tensor &q = saved[0], &k = saved[1], &v = saved[2], &out = saved[3], &lse = saved[4];
    const int64_t window = ctx->saved_data["window"].toInt();
    const double scale = ctx->saved_data["scale"].toDouble();
    auto grads = at::_flash_attention_backward(grad_outputs[0].contiguous(), q, k, v, out, lse, torch::Tensor(),
                                               torch::Tensor(), q.size(1), k.size(1), /*dropout_p=*/0.0,
                                               /*is_causal=*/true, saved[5], saved[6], scale, flash_window_left(window),
                                               /*window_size_right=*/int64_t{0});
    return {std::get<0>(grads), std::get<1>(grads), std::get<2>(grads), torch::Tensor(), torch::Tensor()};
  }
};
#endif

// One block of queries [q_begin, q_end) against the keys it can see. Shapes (compute dtype):
// q5 (B, Hk, G, Tq, D), k4/v4 (B, Hk, Tk, D); returns (B, Hk, G, q_end - q_begin, D).
torch::Tensor attend_block(const torch::Tensor& q5, const torch::Tensor& k4, const torch::Tensor& v4, int64_t q_begin,
                           int64_t q_end, int64_t offset, int64_t window) {
  const int64_t first_pos = offset + q_begin, end_pos = offset + q_end;
  const int64_t key_begin = window > 0 ? std::max<int64_t>(0, first_pos - window + 1) : 0;
  auto qb = q5.narrow(3, q_begin, q_end - q_begin);
  auto kb = k4.narrow(2, key_begin, end_pos - key_begin).unsqueeze(2);
  auto vb = v4.narrow(2, key_begin, end_pos - key_begin).unsqueeze(2);
  auto scores = torch::matmul(qb, kb.transpose(-1, -2));

  auto idx_opts = torch::TensorOptions().dtype(torch::kLong).device(q5.device());
  auto qpos = torch::arange(first_pos, end_pos, idx_opts).unsqueeze(1);
  auto kpos = torch::arange(key_begin, end_pos, idx_opts).unsqueeze(0);
  auto hidden = kpos > qpos;
  if (window > 0) hidden = hidden.logical_or(kpos <= qpos - window);
  scores = scores.masked_fill(hidden, -std::numeric_limits<double>::infinity());
  return torch::matmul(torch::softmax(scores, -1), vb);
}

}  // namespace

torch::Tensor causal_attention_reference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                         int64_t window, double scale, int64_t block_q) {
  check_layout(q, k, v);
  const int64_t B = q.size(0), Tq = q.size(1), H = q.size(2), D = q.size(3);
  const int64_t Tk = k.size(1), Hk = k.size(2), G = H / Hk;
  const int64_t W = effective_window(window, Tk);
  // Low-precision inputs accumulate in fp32 so the reference stays an oracle for bf16 kernels.
  const auto compute = q.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;

  // Query head h = kv_head * G + g, matching the GQA convention of FA2 and of repeat_interleave.
  auto q5 = (q.to(compute) * scale).reshape({B, Tq, Hk, G, D}).permute({0, 2, 3, 1, 4});
  auto k4 = k.to(compute).permute({0, 2, 1, 3});
  auto v4 = v.to(compute).permute({0, 2, 1, 3});

  // Blocks bound the score matrix to (block x (block + W)); short inputs take one block.
  if (block_q <= 0) block_q = Tq <= 1024 ? Tq : 512;
  block_q = std::max<int64_t>(1, std::min(block_q, Tq));
  const int64_t offset = Tk - Tq;
  std::vector<torch::Tensor> parts;
  for (int64_t s = 0; s < Tq; s += block_q) parts.push_back(attend_block(q5, k4, v4, s, std::min(Tq, s + block_q), offset, W));
  auto out = parts.size() == 1 ? parts[0] : torch::cat(parts, 3);
  return out.permute({0, 3, 1, 2, 4}).reshape({B, Tq, H, D}).to(q.scalar_type());
}

bool flash_attention_applicable(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
#if SAMBA_HAVE_FLASH_ATTENTION
  const auto dt = q.scalar_type();
  return q.is_cuda() && (dt == torch::kBFloat16 || dt == torch::kHalf) && k.scalar_type() == dt &&
         v.scalar_type() == dt && q.dim() == 4 && k.dim() == 4 && q.size(1) == k.size(1) && q.size(3) % 8 == 0 &&
         q.size(3) <= 256;
#else
  (void)q;
  (void)k;
  (void)v;
  return false;
#endif
}

torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t window,
                               double scale) {
  check_layout(q, k, v);
#if SAMBA_HAVE_FLASH_ATTENTION
  if (flash_attention_applicable(q, k, v))
    return FlashAttentionFunction::apply(q, k, v, effective_window(window, k.size(1)), scale);
#endif
  return causal_attention_reference(q, k, v, window, scale);
}

torch::Tensor attention_decode_step(const torch::Tensor& q, const torch::Tensor& k_cache, const torch::Tensor& v_cache,
                                    int64_t n_valid, double scale) {
  check(q.dim() == 4 && q.size(1) == 1, "attention_decode_step takes one query (B, 1, H, D), got ", q.sizes());
  check(n_valid >= 1 && n_valid <= k_cache.size(1), "attention_decode_step: n_valid ", n_valid,
        " outside the cache capacity ", k_cache.size(1));
  // A single query placed after every valid slot sees all of them under full causality.
  return causal_attention_reference(q, k_cache.narrow(1, 0, n_valid), v_cache.narrow(1, 0, n_valid), 0, scale);
}

double mean_visible_keys(int64_t context, int64_t window) {
  const double T = static_cast<double>(std::max<int64_t>(1, context));
  if (window <= 0 || window >= context) return (T + 1.0) / 2.0;
  const double W = static_cast<double>(window);
  // Positions 1..W see 1..W keys (triangle); the remaining T - W positions see W each.
  return (W * (W + 1.0) / 2.0 + (T - W) * W) / T;
}

}  // namespace samba
