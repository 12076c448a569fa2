#pragma once
// SwiGLU MLP: down(silu(gate(x)) * up(x)), no biases. Serves both '-' (hidden = mlp_hidden)
// and '2' (MLP2: hidden 2d, standing in for Mamba).
#include "samba/model/sublayer.h"

namespace samba {

class SwiGLUImpl : public SublayerImpl {
 public:
  SwiGLUImpl(int64_t d_model, int64_t hidden);
  torch::Tensor forward(const torch::Tensor& x) override;
  std::unique_ptr<LayerState> make_state(int64_t batch, const torch::TensorOptions& options) override;
  torch::Tensor step(const torch::Tensor& x, LayerState& state) override;
  void init_parameters(const InitSpec& spec) override;

  torch::nn::Linear gate{nullptr}, up{nullptr}, down{nullptr};
};
TORCH_MODULE(SwiGLU);

SublayerSpec mlp_spec();
SublayerSpec mlp2_spec();

}  // namespace samba
