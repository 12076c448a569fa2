#include "samba/model/layers/gla.h"

#include <cmath>

#include "samba/core/error.h"
#include "samba/kernels/linear_attention.h"

namespace samba {

namespace linear_attention_layer {

torch::Tensor split_heads(const torch::Tensor& x, int64_t heads) {
  return x.view({x.size(0), x.size(1), heads, x.size(2) / heads}).transpose(1, 2);
}

torch::Tensor merge_heads(const torch::Tensor& x) {
  return x.transpose(1, 2).reshape({x.size(0), x.size(2), x.size(1) * x.size(3)});
}

torch::Tensor norm_swish_gate(const torch::Tensor& o, const torch::Tensor& gate, RMSNormImpl& norm) {
  auto normed = merge_heads(norm.forward(o).to(gate.scalar_type()));
  return normed * torch::silu(gate);
}

double recurrence_flops_per_token(int64_t heads, int64_t dk, int64_t dv, int64_t chunk, int64_t context) {
  const double c = static_cast<double>(std::max<int64_t>(1, std::min(chunk, context)));
  const double keys_seen = (c + 1.0) / 2.0;  // causal average within a chunk
  // q_t S (2 dk dv), the chunk state update amortised per token (2 dk dv), and the
  // intra-chunk scores q k^T (2 dk per key) and scores . v (2 dv per key).
  const double per_head = 4.0 * dk * dv + 2.0 * keys_seen * (dk + dv);
  return static_cast<double>(heads) * per_head;
}

torch::ScalarType state_dtype(torch::ScalarType activations) {
  return activations == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

}  // namespace linear_attention_layer

namespace {

namespace la = linear_attention_layer;

int64_t scaled_dim(double expand, int64_t d) { return static_cast<int64_t>(std::llround(expand * d)); }

torch::nn::Linear linear(int64_t in, int64_t out, bool bias = false) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}

}  // namespace

GLAImpl::GLAImpl(const ModelConfig& cfg)
    : SublayerImpl("GLA"),
      heads_(cfg.gla_heads()),
      key_dim_(scaled_dim(cfg.gla.key_expand, cfg.d_model)),
      value_dim_(scaled_dim(cfg.gla.value_expand, cfg.d_model)),
      chunk_size_(cfg.gla.chunk_size),
      gate_normalizer_(cfg.gla.gate_normalizer) {
  check(key_dim_ % heads_ == 0 && value_dim_ % heads_ == 0, "GLA: ", heads_, " heads must divide the key dim (",
        key_dim_, ") and value dim (", value_dim_, ")");
  const int64_t d = cfg.d_model;
  q_proj = register_module("q_proj", linear(d, key_dim_));
  k_proj = register_module("k_proj", linear(d, key_dim_));
  v_proj = register_module("v_proj", linear(d, value_dim_));
  g_proj = register_module("g_proj", linear(d, value_dim_));
  gk_down = linear(d, cfg.gla.gate_low_rank);
  gk_up = linear(cfg.gla.gate_low_rank, key_dim_, /*bias=*/true);
  // A Sequential only for the names (gk_proj.0 / gk_proj.1, as in fla checkpoints).
  torch::nn::Sequential gk_proj(gk_down, gk_up);
  register_module("gk_proj", gk_proj);
  g_norm = register_module("g_norm", RMSNorm(value_head_dim(), cfg.norm_eps));
  o_proj = register_module("o_proj", linear(value_dim_, d));
  if (cfg.gla.short_conv) {
    const int64_t kernel = cfg.gla.short_conv_kernel;
    q_conv1d = register_module("q_conv1d", ShortConv(key_dim_, kernel));
    k_conv1d = register_module("k_conv1d", ShortConv(key_dim_, kernel));
    v_conv1d = register_module("v_conv1d", ShortConv(value_dim_, kernel));
  }
}

GLAImpl::Projected GLAImpl::project(const torch::Tensor& x, GLAState* state) {
  auto q = q_proj(x), k = k_proj(x), v = v_proj(x);
  if (q_conv1d) {
    q = state ? q_conv1d->step(q, state->q_conv) : q_conv1d(q);
    k = state ? k_conv1d->step(k, state->k_conv) : k_conv1d(k);
    v = state ? v_conv1d->step(v, state->v_conv) : v_conv1d(v);
  }
  Projected p;
  p.q = la::split_heads(q, heads_);
  p.k = la::split_heads(k, heads_);
  p.v = la::split_heads(v, heads_);
  // The normaliser keeps the gates near 1 (slow forgetting) at init, as in the GLA paper.
  auto gate_logits = gk_up(gk_down(x));
  p.log_g = la::split_heads(torch::log_sigmoid(gate_logits.to(la::state_dtype(x.scalar_type()))) / gate_normalizer_,
                            heads_);
  return p;
}

torch::Tensor GLAImpl::gate_and_project(const torch::Tensor& o, const torch::Tensor& x) {
  return o_proj(la::norm_swish_gate(o, g_proj(x), *g_norm));
}

torch::Tensor GLAImpl::forward(const torch::Tensor& x) {
  check(x.dim() == 3, "GLA expects (batch, time, d_model), got ", x.sizes());
  auto p = project(x, nullptr);
  const double scale = 1.0 / std::sqrt(static_cast<double>(key_head_dim()));
  auto o = kernels::gla_chunked(p.q, p.k, p.v, p.log_g, chunk_size_, scale).output;
  return gate_and_project(o, x);
}

std::unique_ptr<LayerState> GLAImpl::make_state(int64_t batch, const torch::TensorOptions& options) {
  auto s = std::make_unique<GLAState>();
  s->state = torch::zeros({batch, heads_, key_head_dim(), value_head_dim()},
                          options.dtype(la::state_dtype(c10::typeMetaToScalarType(options.dtype()))));
  if (q_conv1d) {
    s->q_conv = q_conv1d->make_state(batch, options);
    s->k_conv = k_conv1d->make_state(batch, options);
    s->v_conv = v_conv1d->make_state(batch, options);
  }
  return s;
}

torch::Tensor GLAImpl::step(const torch::Tensor& x, LayerState& state) {
  check(x.dim() == 3 && x.size(1) == 1, "GLA step takes (batch, 1, d_model), got ", x.sizes());
  auto* s = dynamic_cast<GLAState*>(&state);
  check(s != nullptr, "GLA step was given another layer's decode state");
  auto p = project(x, s);
  const double scale = 1.0 / std::sqrt(static_cast<double>(key_head_dim()));
  auto o = kernels::gla_step(p.q.squeeze(2), p.k.squeeze(2), p.v.squeeze(2), p.log_g.squeeze(2), s->state, scale);
  return gate_and_project(o.unsqueeze(2), x);
}

void GLAImpl::init_parameters(const InitSpec& spec) {
  // fla's own init under mamba_init (the reference never replaces it), TinyLlama's otherwise.
  for (auto* l : {&q_proj, &k_proj, &v_proj, &g_proj, &gk_down, &gk_up}) init_fla_projection(*l, spec);
  g_norm->reset_parameters();
  // The convs keep PyTorch's Conv1d default under both schemes (fla does the same).
  for (auto* conv : {&q_conv1d, &k_conv1d, &v_conv1d})
    if (*conv) (*conv)->reset_parameters();
  init_fla_output_projection(o_proj, spec);
}

SublayerSpec gla_spec() {
  SublayerSpec s;
  s.symbol = layer_char::kGLA;
  s.make = [](const ModelConfig& cfg, int64_t) {
    return std::static_pointer_cast<SublayerImpl>(std::make_shared<GLAImpl>(cfg));
  };
  s.num_params = [](const ModelConfig& cfg) {
    const int64_t d = cfg.d_model, r = cfg.gla.gate_low_rank;
    const int64_t dk = scaled_dim(cfg.gla.key_expand, d), dv = scaled_dim(cfg.gla.value_expand, d);
    const int64_t projections = 2 * d * dk + 3 * d * dv;  // q, k, v, g, o
    const int64_t forget_gate = d * r + r * dk + dk;
    const int64_t short_conv = cfg.gla.short_conv ? (2 * dk + dv) * cfg.gla.short_conv_kernel : 0;
    return projections + forget_gate + short_conv + dv / cfg.gla_heads();
  };
  s.forward_flops_per_token = [](const ModelConfig& cfg, int64_t context) {
    const int64_t d = cfg.d_model, r = cfg.gla.gate_low_rank, h = cfg.gla_heads();
    const int64_t dk = scaled_dim(cfg.gla.key_expand, d), dv = scaled_dim(cfg.gla.value_expand, d);
    const double matmuls = 2.0 * static_cast<double>(2 * d * dk + 3 * d * dv + d * r + r * dk);
    const double convs =
        cfg.gla.short_conv ? 2.0 * static_cast<double>((2 * dk + dv) * cfg.gla.short_conv_kernel) : 0.0;
    return matmuls + convs + la::recurrence_flops_per_token(h, dk / h, dv / h, cfg.gla.chunk_size, context);
  };
  s.saved_activations_per_token = [](const ModelConfig& cfg) {
    const int64_t d = cfg.d_model, r = cfg.gla.gate_low_rank, h = cfg.gla_heads();
    const int64_t dk = scaled_dim(cfg.gla.key_expand, d), dv = scaled_dim(cfg.gla.value_expand, d);
    // x, q, k, log gate, gate logits, low-rank gate, v, g, o, normed o, gated o; plus the
    // intra-chunk score rows and the per-key-dim decays of the diagonal sub-chunk blocks.
    const double c = static_cast<double>(std::min<int64_t>(16, cfg.gla.chunk_size));
    return static_cast<double>(d + 4 * dk + r + 5 * dv) + static_cast<double>(h * cfg.gla.chunk_size) + c * dk;
  };
  return s;
}

}  // namespace samba
