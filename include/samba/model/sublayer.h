#pragma once
// The one interface every residual sublayer (mixer or MLP) implements. The hybrid stack
// (model.h) only talks to this interface. A layer is its module (<layer>.cpp: this
// interface + its SublayerSpec, one line in src/model/registry.cpp) and its config side
// (<layer>_config.cpp: pattern char, name, YAML section read/validated/written; one line in
// kinds_config.cpp; layer_config.h), both in src/model/layers/, plus tests.
//
//   forward:  (B, T, d) -> (B, T, d), the whole sequence (training, prefill, evaluation).
//   step:     (B, 1, d) -> (B, 1, d), one token with per-layer recurrent state (decoding):
//             Mamba conv + SSM state, a ring KV cache for SWA, GLA/RetNet matrix state.
//   init:     the spec's initialisation (mamba_init or TinyLlama), see init.h.
// The input to forward is already normalised: by default the stack computes the pre-norm
// residual x + forward(norm(x)). A mixer whose block mixes the raw stream itself (Mega's
// gated residual x + u * (h - x)) overrides residual_forward / residual_step instead; the
// stack always calls those, so it needs no case for any particular layer.
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "samba/core/config.h"
#include "samba/model/init.h"
#include "samba/model/layers/rmsnorm.h"

namespace samba {

// Per-layer decoding state; each layer defines its own subclass.
struct LayerState {
  virtual ~LayerState() = default;
};

class SublayerImpl : public torch::nn::Module {
 public:
  explicit SublayerImpl(std::string name) : torch::nn::Module(std::move(name)) {}
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;

  // Decoding. The default says the layer has no recurrent form (yet).
  virtual std::unique_ptr<LayerState> make_state(int64_t batch, const torch::TensorOptions& options);
  virtual torch::Tensor step(const torch::Tensor& x, LayerState& state);

  // One residual sublayer on the raw stream x, given the stack's pre-norm: returns the new
  // stream (same dtype as x). Default: x + forward(norm(x)).
  virtual torch::Tensor residual_forward(const torch::Tensor& x, RMSNormImpl& norm);
  virtual torch::Tensor residual_step(const torch::Tensor& x, RMSNormImpl& norm, LayerState& state);
  // True for layers that override residual_forward (their residual is not a plain add), which
  // keeps the whole stack off the fused norm + residual path.
  virtual bool owns_residual() const { return false; }

  // (Re)initialises every parameter per the scheme in `spec`.
  virtual void init_parameters(const InitSpec& spec) = 0;
};

// What the registry knows about a pattern character. The counting functions work from the
// config alone (no tensors), so `samba inspect` can describe a 3.8B model instantly; tests
// check them against the built module.
struct SublayerSpec {
  char symbol = '?';
  const char* name = "";  // filled by the registry from the layer's kind (layer_config.h)
  std::function<std::shared_ptr<SublayerImpl>(const ModelConfig&, int64_t layer_index)> make;
  std::function<int64_t(const ModelConfig&)> num_params;
  // Forward FLOPs per token (2 per multiply-add) at a given context length; attention
  // counts the keys a query actually sees (window-limited, causal average).
  std::function<double(const ModelConfig&, int64_t context)> forward_flops_per_token;
  // Rough number of activation values saved for backward, per token (memory estimate).
  std::function<double(const ModelConfig&)> saved_activations_per_token;
};

const SublayerSpec& sublayer_spec(char symbol);  // throws samba::Error on unknown chars
std::shared_ptr<SublayerImpl> make_sublayer(char symbol, const ModelConfig& cfg, int64_t layer_index);

}  // namespace samba
