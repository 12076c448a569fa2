#pragma once
// Mega-S6 ('S'): Mega's moving-average gated attention with the damped EMA replaced by the
// S6 (Mamba) selective recurrence, the mega-s6-422m baseline of the Samba paper. The math,
// the sizes and the initialisation are written out in mega_s6.cpp.
//
// Sizes (MegaConfig): z_dim = shared query/key dim (auto min(128, d)), hidden = value dim
// = hidden_expand * d (reference 1), chunk_size = attention is causal softmax within chunks.
// The S6 part reuses MambaConfig's d_state, d_conv, dt_min/max/floor and conv_bias, with no
// channel expansion and dt_rank = ceil(d / 32) (the reference S6 module's default).
#include <cstdint>
#include <memory>

#include "samba/model/sublayer.h"

namespace samba {

struct MegaS6Dims {
  int64_t d_model = 0, z_dim = 0, hidden = 0, chunk = 0;
  int64_t d_state = 0, d_conv = 0, dt_rank = 0;
  bool conv_bias = true;
  static MegaS6Dims from_config(const ModelConfig& cfg);
  int64_t mx_width() const { return 2 * d_model + z_dim + hidden; }  // u | z | r | hx
};

// Decoding state: the S6 conv window and SSM state, plus the keys and values of the chunk
// the next token belongs to (attention never looks past a chunk start, so that is all).
struct MegaS6State : LayerState {
  torch::Tensor conv;     // (B, d, d_conv - 1): the last inputs of the causal conv
  torch::Tensor ssm;      // (B, d, N), fp32 (fp64 for fp64 models)
  torch::Tensor k_cache;  // (B, chunk, z)
  torch::Tensor v_cache;  // (B, chunk, hidden)
  int64_t position = 0;   // tokens consumed so far
};

class MegaS6Impl : public SublayerImpl {
 public:
  explicit MegaS6Impl(const ModelConfig& cfg);
  // The block owns its residual: residual_forward(x_raw, norm) = x_raw + u * (h - x_raw),
  // h and u computed from norm(x_raw). forward()/step() alone are refused.
  torch::Tensor forward(const torch::Tensor& x) override;
  torch::Tensor residual_forward(const torch::Tensor& x_raw, RMSNormImpl& norm) override;
  bool owns_residual() const override { return true; }
  std::unique_ptr<LayerState> make_state(int64_t batch, const torch::TensorOptions& options) override;
  torch::Tensor step(const torch::Tensor& x, LayerState& state) override;
  torch::Tensor residual_step(const torch::Tensor& x_raw, RMSNormImpl& norm, LayerState& state) override;
  void init_parameters(const InitSpec& spec) override;

  // (n, n) additive relative-position bias for chunk positions 0..n-1: entry (i, j) is
  // rot_i(alpha) . rot_j(beta), which depends on i - j only.
  torch::Tensor relative_position_bias(int64_t n) const;

  MegaS6Dims dims;
  double dt_min, dt_max, dt_init_floor;

  // S6 (no expansion, no gate, no output projection).
  torch::nn::Conv1d conv1d{nullptr};
  torch::nn::Linear x_proj{nullptr}, dt_proj{nullptr};
  torch::Tensor A_log, D;
  // Gated attention.
  torch::nn::Linear v_proj{nullptr}, mx_proj{nullptr}, h_proj{nullptr};
  torch::Tensor qk_gamma, qk_beta;              // (2, z): q = z*gamma[0]+beta[0], k = z*gamma[1]+beta[1]
  torch::Tensor rel_pos_alpha, rel_pos_beta;  // (z)

 private:
  // Everything after the S6 output, shared by forward and step: returns the gate u, the
  // queries, keys, the gate r and the pre-activation hx, each (..., width).
  struct Projected {
    torch::Tensor u, q, k, r, hx;
  };
  Projected project(const torch::Tensor& s6_out);
  // h = silu(hx + h_proj(attended * r)), the candidate the gate u mixes into the stream.
  torch::Tensor finish(const Projected& p, const torch::Tensor& attended);
  // The block on normalised input: returns h, fills p (whose u the highway mix needs).
  torch::Tensor mix(const torch::Tensor& x_normed, Projected& p);
  torch::Tensor mix_step(const torch::Tensor& x_normed, LayerState& state, Projected& p);
  static torch::Tensor highway(const torch::Tensor& x, const torch::Tensor& u, const torch::Tensor& h);
};
TORCH_MODULE(MegaS6);

SublayerSpec mega_s6_spec();

}  // namespace samba
