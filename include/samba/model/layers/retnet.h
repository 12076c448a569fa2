#pragma once
// 'R': multi-scale retention (Sun et al. 2023), configured as in Samba's "Sliding RetNet"
// baseline (fla's MultiScaleRetention with expand_k 1, expand_v 2, attention.n_heads / 2 heads):
//   q, k = rotary(x W_q), rotary(x W_k) (d -> Dk; rotate-half over the head dim, base 10000,
//   positions counted from the start of the sequence), v = x W_v (d -> Dv), scale Dk_head^-1/2
//   S_t = gamma_h S_{t-1} + k_t^T v_t,  o_t = q_t S_t,  gamma_h = 1 - 2^(-5 - h)
//   y = W_o ( RMSNorm_head(o) * swish(W_g x) ), the norm's scale shared by all heads
// Parameter names follow fla: q_proj, k_proj, v_proj, g_proj, g_norm, o_proj.
#include <vector>

#include "samba/model/layers/gla.h"
#include "samba/model/layers/rope.h"
#include "samba/model/sublayer.h"

namespace samba {

struct RetNetState : LayerState {
  torch::Tensor state;   // (B, H, Dk_head, Dv_head), fp32 (fp64 for fp64 models)
  int64_t position = 0;  // tokens consumed so far: the rotary position of the next token
};

// gamma_h = 1 - 2^(-5 - h) for h = 0 .. heads - 1.
std::vector<double> retnet_decays(int64_t heads);

class RetNetImpl : public SublayerImpl {
 public:
  explicit RetNetImpl(const ModelConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x) override;
  std::unique_ptr<LayerState> make_state(int64_t batch, const torch::TensorOptions& options) override;
  torch::Tensor step(const torch::Tensor& x, LayerState& state) override;
  void init_parameters(const InitSpec& spec) override;

  int64_t heads() const { return heads_; }
  int64_t key_head_dim() const { return key_dim_ / heads_; }
  int64_t value_head_dim() const { return value_dim_ / heads_; }
  // log gamma_h as a tensor (H) on the given device, in fp64 (the kernels cast).
  torch::Tensor log_decays(const torch::Device& device) const;

  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, g_proj{nullptr}, o_proj{nullptr};
  RMSNorm g_norm{nullptr};

 private:
  // q, k (B, T, Dk) -> rotated (B, H, T, Dk_head) for positions offset .. offset + T - 1.
  torch::Tensor rotated_heads(const torch::Tensor& x, int64_t offset);

  int64_t heads_, key_dim_, value_dim_, chunk_size_;
  RotaryEmbedding rotary_;
};
TORCH_MODULE(RetNet);

SublayerSpec retnet_spec();

}  // namespace samba
