#pragma once
// The Mamba mixer ('M'), samba-spec.md section 2:
//   x, z   = in_proj(u)                         d -> 2E (E = expand * d)
//   x      = silu(causal depthwise conv1d(x))   kernel d_conv, with bias
//   dt,B,C = x_proj(x)                          E -> dt_rank + 2N
//   delta  = softplus(dt_proj(dt))              dt_rank -> E, the bias enters inside the scan
//   y      = selective_scan(x, delta, A = -exp(A_log), B, C, D) * silu(z)
//   out    = out_proj(y)                        E -> d
// Parameter names match mamba_ssm (in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj) so
// that exported weights load by name.
#include "samba/model/sublayer.h"

namespace samba {

// Decoding state: the last d_conv-1 conv inputs and the SSM state (kept in fp32, or fp64
// for fp64 models).
struct MambaState : LayerState {
  torch::Tensor conv;  // (batch, E, d_conv - 1)
  torch::Tensor ssm;   // (batch, E, N)
};

class MambaImpl : public SublayerImpl {
 public:
  MambaImpl(int64_t d_model, const MambaConfig& cfg, int64_t dt_rank);
  MambaImpl(const ModelConfig& cfg) : MambaImpl(cfg.d_model, cfg.mamba, cfg.mamba_dt_rank()) {}

  torch::Tensor forward(const torch::Tensor& x) override;
  std::unique_ptr<LayerState> make_state(int64_t batch, const torch::TensorOptions& options) override;
  torch::Tensor step(const torch::Tensor& x, LayerState& state) override;
  // Runs the whole of x (B, T, d) like forward and leaves `state` ready to decode token T.
  torch::Tensor prefill(const torch::Tensor& x, MambaState& state);
  void init_parameters(const InitSpec& spec) override;

  int64_t d_model, d_inner, d_state, d_conv, dt_rank;
  MambaConfig options;

  torch::nn::Linear in_proj{nullptr};
  torch::nn::Conv1d conv1d{nullptr};  // depthwise, weight (E, 1, d_conv) as in PyTorch
  torch::nn::Linear x_proj{nullptr};
  torch::nn::Linear dt_proj{nullptr};
  torch::Tensor A_log;  // (E, N)
  torch::Tensor D;      // (E)
  torch::nn::Linear out_proj{nullptr};

 private:
  torch::Tensor forward_impl(const torch::Tensor& x, MambaState* state);
};
TORCH_MODULE(Mamba);

SublayerSpec mamba_spec();

}  // namespace samba
