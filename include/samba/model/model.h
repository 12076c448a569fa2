#pragma once
// The hybrid language model: embedding -> sublayers (pre-norm residual, one per pattern
// character) -> final RMSNorm -> LM head (tied to the embedding unless configured otherwise).
// Canonical parameter names (stable, exported as-is):
//   embed.weight, layers.<i>.norm.weight, layers.<i>.mixer.<...>, norm_f.weight, lm_head.weight
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "samba/core/config.h"
#include "samba/model/layers/rmsnorm.h"
#include "samba/model/sublayer.h"

namespace samba {

// One residual sublayer: the stack's pre-norm plus the mixer, which owns the residual
// (default x + mixer(norm(x)), see sublayer.h); the stream stays fp32.
class ResidualImpl : public torch::nn::Module {
 public:
  ResidualImpl(const ModelConfig& cfg, char symbol, int64_t index);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor step(const torch::Tensor& x, LayerState& state);

  char symbol;
  RMSNorm norm{nullptr};
  std::shared_ptr<SublayerImpl> mixer;
};
TORCH_MODULE(Residual);

using DecodeState = std::vector<std::unique_ptr<LayerState>>;

class LanguageModelImpl : public torch::nn::Module {
 public:
  explicit LanguageModelImpl(const ModelConfig& cfg);

  // tokens (B, T) int64 -> logits (B, T, vocab) fp32.
  torch::Tensor forward(const torch::Tensor& tokens);
  // tokens (B, T) -> final-normed hidden states (B, T, d).
  torch::Tensor hidden_states(const torch::Tensor& tokens);
  torch::Tensor logits_from_hidden(const torch::Tensor& hidden);
  // Mean next-token cross-entropy of `targets` (B, T); entries equal to -1 are ignored.
  torch::Tensor loss(const torch::Tensor& tokens, const torch::Tensor& targets);

  // Step-by-step decoding with per-layer state.
  DecodeState make_state(int64_t batch);
  // tokens (B, 1) -> logits (B, 1, vocab)
  torch::Tensor step(const torch::Tensor& tokens, DecodeState& state);

  void init_parameters();
  const ModelConfig& config() const { return cfg_; }
  const torch::Tensor& lm_head_weight();

  torch::nn::Embedding embed{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm_f{nullptr};
  torch::nn::Linear lm_head{nullptr};  // null when tied to embed

 private:
  // The stack through the fused RMSNorm + residual kernel (CUDA): the stream is carried as
  // (residual, pending sublayer output) and each norm adds the pending output in the same pass.
  bool fused_residual_path(const torch::Tensor& x);
  torch::Tensor hidden_states_fused(torch::Tensor x);

  ModelConfig cfg_;
};
TORCH_MODULE(LanguageModel);

}  // namespace samba
