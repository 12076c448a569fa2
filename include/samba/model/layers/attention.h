#pragma once
// Softmax attention mixers: '*' sliding-window attention (window = attention.window) and
// 'A' full causal attention. Both share one module:
//   q = q_proj(x) (d -> H*hd), k = k_proj(x), v = v_proj(x) (d -> Hkv*hd), bias iff qkv_bias;
//   optional short conv + SiLU on each of q, k, v (the "SC" ablation), before RoPE;
//   RoPE on q and k at absolute positions (or NoPE); causal_attention; o_proj (H*hd -> d, no bias).
// Parameter names: q_proj, k_proj, v_proj, o_proj (.weight/.bias), q_conv, k_conv, v_conv (.weight).
//
// Decoding keeps a KV cache of keys already rotated at their absolute positions. For '*' it is
// a ring buffer of W slots (slot = position mod W): O(W) memory and constant work per token,
// however long the stream. For 'A' it grows (capacity doubles). step() is for inference; it
// writes the cache in place, so it is not meant to be differentiated.
#include <memory>
#include <optional>

#include "samba/model/layers/rope.h"
#include "samba/model/layers/short_conv.h"
#include "samba/model/sublayer.h"

namespace samba {

struct AttentionState : LayerState {
  torch::Tensor k, v;   // (B, capacity, Hkv, hd)
  int64_t position = 0;  // tokens consumed so far = absolute position of the next token
  bool ring = false;     // '*': fixed capacity W, slot = position mod W
  torch::Tensor q_conv, k_conv, v_conv;  // short-conv windows (B, C, K - 1), if enabled
};

class AttentionImpl : public SublayerImpl {
 public:
  // window <= 0: full causal attention ('A'); otherwise each query sees the last `window` keys.
  AttentionImpl(const ModelConfig& cfg, int64_t window);

  torch::Tensor forward(const torch::Tensor& x) override;
  std::unique_ptr<LayerState> make_state(int64_t batch, const torch::TensorOptions& options) override;
  torch::Tensor step(const torch::Tensor& x, LayerState& state) override;
  void init_parameters(const InitSpec& spec) override;

  int64_t n_heads, n_kv_heads, head_dim, window;
  double scale;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  ShortConv q_conv{nullptr}, k_conv{nullptr}, v_conv{nullptr};  // null unless attention.short_conv
  std::optional<RotaryEmbedding> rotary;                         // empty = NoPE

 private:
  // Projections, short convs (forward or step form) and RoPE: x (B, T, d) -> q, k, v heads.
  struct Heads {
    torch::Tensor q, k, v;
  };
  Heads project(const torch::Tensor& x, int64_t offset, AttentionState* state);
};
TORCH_MODULE(Attention);

SublayerSpec swa_spec();             // '*'
SublayerSpec full_attention_spec();  // 'A'

}  // namespace samba
