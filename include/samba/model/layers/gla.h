#pragma once
// 'G': gated linear attention (Yang et al. 2023), configured as in Samba's "Sliding GLA"
// baseline (fla's GatedLinearAttention with expand_k 0.5, expand_v 1, d / 384 heads):
//   q, k = x W_q, x W_k (d -> Dk), v = x W_v (d -> Dv), no feature map, scale Dk_head^-1/2
//   (with gla.short_conv: each of q, k, v then goes through its own causal depthwise conv + SiLU)
//   log forget gate = logsigmoid(W_gk2 (W_gk1 x) + b) / gate_normalizer, low rank 16, per key dim
//   o = GLA(q, k, v, log gate) (chunked, no window, no positions)
//   y = W_o ( RMSNorm_head(o) * swish(W_g x) ), the norm's scale shared by all heads
// Parameter names follow fla: q_proj, k_proj, v_proj, g_proj, gk_proj.0, gk_proj.1,
// g_norm, o_proj (and q_conv1d, k_conv1d, v_conv1d with the short conv).
#include "samba/model/sublayer.h"
#include "samba/model/layers/rmsnorm.h"
#include "samba/model/layers/short_conv.h"

namespace samba {

struct GLAState : LayerState {
  torch::Tensor state;  // (B, H, Dk_head, Dv_head), fp32 (fp64 for fp64 models)
  torch::Tensor q_conv, k_conv, v_conv;  // short-conv windows, only with gla.short_conv
};

class GLAImpl : public SublayerImpl {
 public:
  explicit GLAImpl(const ModelConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x) override;
  std::unique_ptr<LayerState> make_state(int64_t batch, const torch::TensorOptions& options) override;
  torch::Tensor step(const torch::Tensor& x, LayerState& state) override;
  void init_parameters(const InitSpec& spec) override;

  int64_t heads() const { return heads_; }
  int64_t key_head_dim() const { return key_dim_ / heads_; }
  int64_t value_head_dim() const { return value_dim_ / heads_; }

  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, g_proj{nullptr}, o_proj{nullptr};
  torch::nn::Linear gk_down{nullptr}, gk_up{nullptr};  // registered together as gk_proj.{0,1}
  RMSNorm g_norm{nullptr};
  ShortConv q_conv1d{nullptr}, k_conv1d{nullptr}, v_conv1d{nullptr};  // null without short conv

 private:
  struct Projected {
    torch::Tensor q, k, v, log_g;  // (B, H, T, .)
  };
  // state == nullptr: the whole sequence; otherwise one decoding step advancing the conv windows.
  Projected project(const torch::Tensor& x, GLAState* state);
  torch::Tensor gate_and_project(const torch::Tensor& o, const torch::Tensor& x);  // o (B, H, T, Dv_head)

  int64_t heads_, key_dim_, value_dim_, chunk_size_;
  double gate_normalizer_;
};
TORCH_MODULE(GLA);

SublayerSpec gla_spec();

// Shared by the GLA and RetNet layers (the two differ only in gates and positions).
namespace linear_attention_layer {
// (B, T, H * D) -> (B, H, T, D) and back.
torch::Tensor split_heads(const torch::Tensor& x, int64_t heads);
torch::Tensor merge_heads(const torch::Tensor& x);
// RMSNorm over each head's values (one scale shared by all heads), times swish(gate).
// o (B, H, T, Dv_head), gate (B, T, H * Dv_head) -> (B, T, H * Dv_head).
torch::Tensor norm_swish_gate(const torch::Tensor& o, const torch::Tensor& gate, RMSNormImpl& norm);
// Forward FLOPs per token of the chunked recurrence (q.S, state update, causal intra-chunk
// scores and their product with v), for `heads` heads at a given context length.
double recurrence_flops_per_token(int64_t heads, int64_t key_head_dim, int64_t value_head_dim, int64_t chunk,
                                  int64_t context);
// Compute dtype of the recurrent state for a given parameter / activation dtype.
torch::ScalarType state_dtype(torch::ScalarType activations);
}  // namespace linear_attention_layer

}  // namespace samba
