#include "samba/model/layers/retnet.h"

#include <cmath>

#include "samba/core/error.h"
#include "samba/kernels/linear_attention.h"

namespace samba {
namespace {

namespace la = linear_attention_layer;

// RetNet's rotation is its own (fla's RotaryEmbedding default), independent of the
// attention layers' rope settings: Samba-NoPE style switches must not change RetNet.
constexpr double kRotaryBase = 10000.0;

int64_t scaled_dim(double expand, int64_t d) { return static_cast<int64_t>(std::llround(expand * d)); }

torch::nn::Linear linear(int64_t in, int64_t out) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
}

}  // namespace

std::vector<double> retnet_decays(int64_t heads) {
  std::vector<double> gammas;
  for (int64_t h = 0; h < heads; ++h) gammas.push_back(1.0 - std::exp2(-5.0 - static_cast<double>(h)));
  return gammas;
}

RetNetImpl::RetNetImpl(const ModelConfig& cfg)
    : SublayerImpl("RetNet"),
      heads_(cfg.retnet_heads()),
      key_dim_(scaled_dim(cfg.retnet.key_expand, cfg.d_model)),
      value_dim_(scaled_dim(cfg.retnet.value_expand, cfg.d_model)),
      chunk_size_(cfg.retnet.chunk_size),
      rotary_(cfg.retnet_heads() > 0 ? scaled_dim(cfg.retnet.key_expand, cfg.d_model) / cfg.retnet_heads() : 0,
              kRotaryBase) {
  check(key_dim_ % heads_ == 0 && value_dim_ % heads_ == 0 && (key_dim_ / heads_) % 2 == 0, "RetNet: ", heads_,
        " heads must divide the key dim (", key_dim_, ", into even head dims) and the value dim (", value_dim_, ")");
  const int64_t d = cfg.d_model;
  q_proj = register_module("q_proj", linear(d, key_dim_));
  k_proj = register_module("k_proj", linear(d, key_dim_));
  v_proj = register_module("v_proj", linear(d, value_dim_));
  g_proj = register_module("g_proj", linear(d, value_dim_));
  g_norm = register_module("g_norm", RMSNorm(value_head_dim(), cfg.norm_eps));
  o_proj = register_module("o_proj", linear(value_dim_, d));
}

torch::Tensor RetNetImpl::log_decays(const torch::Device& device) const {
  std::vector<double> logs;
  for (double g : retnet_decays(heads_)) logs.push_back(std::log(g));
  return torch::tensor(logs, torch::TensorOptions().dtype(torch::kFloat64)).to(device);
}

torch::Tensor RetNetImpl::rotated_heads(const torch::Tensor& x, int64_t offset) {
  auto per_head = x.view({x.size(0), x.size(1), heads_, key_head_dim()});
  return rotary_.apply(per_head, offset).transpose(1, 2);
}

torch::Tensor RetNetImpl::forward(const torch::Tensor& x) {
  check(x.dim() == 3, "RetNet expects (batch, time, d_model), got ", x.sizes());
  auto q = rotated_heads(q_proj(x), 0);
  auto k = rotated_heads(k_proj(x), 0);
  auto v = la::split_heads(v_proj(x), heads_);
  const double scale = 1.0 / std::sqrt(static_cast<double>(key_head_dim()));
  auto o = kernels::retention_chunked(q, k, v, log_decays(x.device()), chunk_size_, scale).output;
  return o_proj(la::norm_swish_gate(o, g_proj(x), *g_norm));
}

std::unique_ptr<LayerState> RetNetImpl::make_state(int64_t batch, const torch::TensorOptions& options) {
  auto s = std::make_unique<RetNetState>();
  s->state = torch::zeros({batch, heads_, key_head_dim(), value_head_dim()},
                          options.dtype(la::state_dtype(c10::typeMetaToScalarType(options.dtype()))));
  return s;
}

torch::Tensor RetNetImpl::step(const torch::Tensor& x, LayerState& state) {
  check(x.dim() == 3 && x.size(1) == 1, "RetNet step takes (batch, 1, d_model), got ", x.sizes());
  auto* s = dynamic_cast<RetNetState*>(&state);
  check(s != nullptr, "RetNet step was given another layer's decode state");
  auto q = rotated_heads(q_proj(x), s->position);
  auto k = rotated_heads(k_proj(x), s->position);
  auto v = la::split_heads(v_proj(x), heads_);
  const double scale = 1.0 / std::sqrt(static_cast<double>(key_head_dim()));
  auto o = kernels::retention_step(q.squeeze(2), k.squeeze(2), v.squeeze(2), log_decays(x.device()), s->state, scale);
  s->position += 1;
  return o_proj(la::norm_swish_gate(o.unsqueeze(2), g_proj(x), *g_norm));
}

void RetNetImpl::init_parameters(const InitSpec& spec) {
  // fla's own init under mamba_init (the reference never replaces it), TinyLlama's otherwise.
  for (auto* l : {&q_proj, &k_proj, &v_proj, &g_proj}) init_fla_projection(*l, spec);
  g_norm->reset_parameters();
  init_fla_output_projection(o_proj, spec);
}

SublayerSpec retnet_spec() {
  SublayerSpec s;
  s.symbol = layer_char::kRetNet;
  s.make = [](const ModelConfig& cfg, int64_t) {
    return std::static_pointer_cast<SublayerImpl>(std::make_shared<RetNetImpl>(cfg));
  };
  s.num_params = [](const ModelConfig& cfg) {
    const int64_t d = cfg.d_model;
    const int64_t dk = scaled_dim(cfg.retnet.key_expand, d), dv = scaled_dim(cfg.retnet.value_expand, d);
    return 2 * d * dk + 3 * d * dv + dv / cfg.retnet_heads();  // q, k, v, g, o, g_norm
  };
  s.forward_flops_per_token = [](const ModelConfig& cfg, int64_t context) {
    const int64_t d = cfg.d_model, h = cfg.retnet_heads();
    const int64_t dk = scaled_dim(cfg.retnet.key_expand, d), dv = scaled_dim(cfg.retnet.value_expand, d);
    return 2.0 * static_cast<double>(2 * d * dk + 3 * d * dv) +
           la::recurrence_flops_per_token(h, dk / h, dv / h, cfg.retnet.chunk_size, context);
  };
  s.saved_activations_per_token = [](const ModelConfig& cfg) {
    const int64_t d = cfg.d_model, h = cfg.retnet_heads();
    const int64_t dk = scaled_dim(cfg.retnet.key_expand, d), dv = scaled_dim(cfg.retnet.value_expand, d);
    // x, q, k before and after rotation, v, g, o, normed o, gated o, and the score rows.
    return static_cast<double>(d + 4 * dk + 5 * dv + 2 * h * cfg.retnet.chunk_size);
  };
  return s;
}

}  // namespace samba
