#include "samba/model/layers/attention.h"

#include <cmath>
#include <tuple>

#include "samba/core/error.h"
#include "samba/kernels/attention.h"

namespace samba {

AttentionImpl::AttentionImpl(const ModelConfig& cfg, int64_t window_)
    : SublayerImpl(window_ > 0 ? "SlidingWindowAttention" : "FullAttention"),
      n_heads(cfg.attention.n_heads),
      n_kv_heads(cfg.attn_kv_heads()),
      head_dim(cfg.attn_head_dim()),
      window(window_ > 0 ? window_ : 0) {
  const auto& a = cfg.attention;
  check(n_heads > 0 && head_dim > 0 && n_kv_heads > 0 && n_heads % n_kv_heads == 0, "attention: invalid heads ",
        n_heads, "/", n_kv_heads, " x ", head_dim, " (run validate() on the config)");
  scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  const int64_t d = cfg.d_model, q_dim = n_heads * head_dim, kv_dim = n_kv_heads * head_dim;
  auto linear = [](int64_t in, int64_t out, bool bias) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
  };
  q_proj = register_module("q_proj", linear(d, q_dim, a.qkv_bias));
  k_proj = register_module("k_proj", linear(d, kv_dim, a.qkv_bias));
  v_proj = register_module("v_proj", linear(d, kv_dim, a.qkv_bias));
  o_proj = register_module("o_proj", linear(q_dim, d, false));
  if (a.short_conv) {
    q_conv = register_module("q_conv", ShortConv(q_dim, a.short_conv_kernel));
    k_conv = register_module("k_conv", ShortConv(kv_dim, a.short_conv_kernel));
    v_conv = register_module("v_conv", ShortConv(kv_dim, a.short_conv_kernel));
  }
  if (a.rope) rotary.emplace(head_dim, a.rope_base);
}

AttentionImpl::Heads AttentionImpl::project(const torch::Tensor& x, int64_t offset, AttentionState* state) {
  auto q = q_proj(x), k = k_proj(x), v = v_proj(x);
  if (q_conv) {
    if (state) {
      q = q_conv->step(q, state->q_conv);
      k = k_conv->step(k, state->k_conv);
      v = v_conv->step(v, state->v_conv);
    } else {
      q = q_conv(q);
      k = k_conv(k);
      v = v_conv(v);
    }
  }
  const int64_t B = x.size(0), T = x.size(1);
  q = q.reshape({B, T, n_heads, head_dim});
  k = k.reshape({B, T, n_kv_heads, head_dim});
  v = v.reshape({B, T, n_kv_heads, head_dim});
  if (rotary) std::tie(q, k) = rotary->apply_qk(q, k, offset);
  return {q, k, v};
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x) {
  check(x.dim() == 3, "attention expects (B, T, d), got ", x.sizes());
  auto h = project(x, 0, nullptr);
  auto out = causal_attention(h.q, h.k, h.v, window, scale);
  return o_proj(out.reshape({x.size(0), x.size(1), n_heads * head_dim}));
}

std::unique_ptr<LayerState> AttentionImpl::make_state(int64_t batch, const torch::TensorOptions& options) {
  auto st = std::make_unique<AttentionState>();
  st->ring = window > 0;
  // 'A' starts small and doubles; '*' never needs more than its window.
  const int64_t capacity = st->ring ? window : 64;
  st->k = torch::zeros({batch, capacity, n_kv_heads, head_dim}, options);
  st->v = torch::zeros({batch, capacity, n_kv_heads, head_dim}, options);
  if (q_conv) {
    st->q_conv = q_conv->make_state(batch, options);
    st->k_conv = k_conv->make_state(batch, options);
    st->v_conv = v_conv->make_state(batch, options);
  }
  return st;
}

torch::Tensor AttentionImpl::step(const torch::Tensor& x, LayerState& state) {
  auto* st = dynamic_cast<AttentionState*>(&state);
  check(st != nullptr, "attention step() was given the state of another layer type");
  check(x.dim() == 3 && x.size(1) == 1, "attention step() takes (B, 1, d), got ", x.sizes());
  check(x.size(0) == st->k.size(0), "attention step(): batch ", x.size(0), " but the state was made for ",
        st->k.size(0));
  auto h = project(x, st->position, st);

  int64_t capacity = st->k.size(1);
  if (!st->ring && st->position >= capacity) {
    auto grow = [&](const torch::Tensor& t) { return torch::cat({t, torch::zeros_like(t)}, 1); };
    st->k = grow(st->k);
    st->v = grow(st->v);
    capacity *= 2;
  }
  // Ring: the slot of position p is p mod W, which the token W steps ago just vacated.
  const int64_t slot = st->ring ? st->position % capacity : st->position;
  st->k.select(1, slot).copy_(h.k.squeeze(1));
  st->v.select(1, slot).copy_(h.v.squeeze(1));
  const int64_t n_valid = std::min(st->position + 1, capacity);
  st->position += 1;

  auto out = attention_decode_step(h.q, st->k.to(h.q.scalar_type()), st->v.to(h.q.scalar_type()), n_valid, scale);
  return o_proj(out.reshape({x.size(0), 1, n_heads * head_dim}));
}

void AttentionImpl::init_parameters(const InitSpec& spec) {
  init_input_projection(q_proj, spec);
  init_input_projection(k_proj, spec);
  init_input_projection(v_proj, spec);
  init_output_projection(o_proj, spec);
  for (auto* conv : {&q_conv, &k_conv, &v_conv})
    if (*conv) (*conv)->reset_parameters();
}

namespace {

struct AttentionDims {
  int64_t d, q_dim, kv_dim;
  explicit AttentionDims(const ModelConfig& cfg)
      : d(cfg.d_model),
        q_dim(cfg.attention.n_heads * cfg.attn_head_dim()),
        kv_dim(cfg.attn_kv_heads() * cfg.attn_head_dim()) {}
  int64_t qkv() const { return q_dim + 2 * kv_dim; }
};

int64_t attention_num_params(const ModelConfig& cfg) {
  const AttentionDims a(cfg);
  int64_t n = a.d * a.qkv() + a.q_dim * a.d;
  if (cfg.attention.qkv_bias) n += a.qkv();
  if (cfg.attention.short_conv) n += a.qkv() * cfg.attention.short_conv_kernel;
  return n;
}

// 2 FLOPs per multiply-add. Projections: d x (q + k + v) and q_dim x d per token. Scores QK^T
// and the weighted sum PV cost q_dim multiply-adds per visible key each, and a query sees on
// average mean_visible_keys(context, W) keys: (context + 1) / 2 for full causal attention,
// sum_i min(i, W) / context for a sliding window (about W once context >> W). Short conv adds
// K multiply-adds per q/k/v channel. Softmax, RoPE and SiLU are left out (not matmul work).
double attention_flops(const ModelConfig& cfg, int64_t context, int64_t window) {
  const AttentionDims a(cfg);
  double f = 2.0 * static_cast<double>(a.d * a.qkv() + a.q_dim * a.d);
  f += 2.0 * 2.0 * static_cast<double>(a.q_dim) * mean_visible_keys(context, window);
  if (cfg.attention.short_conv) f += 2.0 * static_cast<double>(a.qkv() * cfg.attention.short_conv_kernel);
  return f;
}

// Saved for backward per token, assuming FlashAttention (no T x T matrix is stored): the
// layer input, q/k/v (post-RoPE), the attention output, one log-sum-exp per head, and with
// short conv the pre-conv q/k/v as well.
double attention_saved_activations(const ModelConfig& cfg) {
  const AttentionDims a(cfg);
  double n = static_cast<double>(a.d + a.qkv() + a.q_dim + cfg.attention.n_heads);
  if (cfg.attention.short_conv) n += static_cast<double>(a.qkv());
  return n;
}

SublayerSpec attention_spec(char symbol, bool sliding) {
  auto window_of = [sliding](const ModelConfig& cfg) -> int64_t { return sliding ? cfg.attention.window : 0; };
  SublayerSpec s;
  s.symbol = symbol;
  s.make = [window_of](const ModelConfig& cfg, int64_t) {
    return std::static_pointer_cast<SublayerImpl>(std::make_shared<AttentionImpl>(cfg, window_of(cfg)));
  };
  s.num_params = attention_num_params;
  s.forward_flops_per_token = [window_of](const ModelConfig& cfg, int64_t context) {
    return attention_flops(cfg, context, window_of(cfg));
  };
  s.saved_activations_per_token = attention_saved_activations;
  return s;
}

}  // namespace

SublayerSpec swa_spec() { return attention_spec(layer_char::kSlidingAttention, true); }
SublayerSpec full_attention_spec() { return attention_spec(layer_char::kFullAttention, false); }

}  // namespace samba
