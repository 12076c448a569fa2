#include "samba/model/layers/mlp.h"

#include "samba/kernels/swiglu.h"

namespace samba {

SwiGLUImpl::SwiGLUImpl(int64_t d_model, int64_t hidden) : SublayerImpl("SwiGLU") {
  gate = register_module("gate", torch::nn::Linear(torch::nn::LinearOptions(d_model, hidden).bias(false)));
  up = register_module("up", torch::nn::Linear(torch::nn::LinearOptions(d_model, hidden).bias(false)));
  down = register_module("down", torch::nn::Linear(torch::nn::LinearOptions(hidden, d_model).bias(false)));
}

torch::Tensor SwiGLUImpl::forward(const torch::Tensor& x) {
  return down(kernels::swiglu(gate(x), up(x)));
}

// Position-wise: decoding needs no state.
std::unique_ptr<LayerState> SwiGLUImpl::make_state(int64_t, const torch::TensorOptions&) {
  return std::make_unique<LayerState>();
}

torch::Tensor SwiGLUImpl::step(const torch::Tensor& x, LayerState&) { return forward(x); }

void SwiGLUImpl::init_parameters(const InitSpec& spec) {
  init_input_projection(gate, spec);
  init_input_projection(up, spec);
  init_output_projection(down, spec);
}

namespace {
SublayerSpec swiglu_spec(char symbol, int64_t (*hidden)(const ModelConfig&)) {
  SublayerSpec s;
  s.symbol = symbol;
  s.make = [hidden](const ModelConfig& cfg, int64_t) {
    return std::static_pointer_cast<SublayerImpl>(std::make_shared<SwiGLUImpl>(cfg.d_model, hidden(cfg)));
  };
  s.num_params = [hidden](const ModelConfig& cfg) { return 3 * cfg.d_model * hidden(cfg); };
  s.forward_flops_per_token = [hidden](const ModelConfig& cfg, int64_t) {
    return 2.0 * 3.0 * static_cast<double>(cfg.d_model * hidden(cfg));
  };
  s.saved_activations_per_token = [hidden](const ModelConfig& cfg) {
    return static_cast<double>(cfg.d_model + 3 * hidden(cfg));
  };
  return s;
}
}  // namespace

SublayerSpec mlp_spec() {
  return swiglu_spec(layer_char::kMLP, [](const ModelConfig& c) { return c.mlp_hidden; });
}

SublayerSpec mlp2_spec() {
  return swiglu_spec(layer_char::kMLP2, [](const ModelConfig& c) { return c.mlp2_hidden_size(); });
}

}  // namespace samba
