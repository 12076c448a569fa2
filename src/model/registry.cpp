// The one table mapping pattern characters to layer modules. Names come from the layer's
// config side (layer_config.h), so a kind is described once.
#include <map>

#include "samba/core/error.h"
#include "samba/model/layers/attention.h"
#include "samba/model/layers/mega_s6.h"
#include "samba/model/layers/mamba.h"
#include "samba/model/layers/gla.h"
#include "samba/model/layers/mlp.h"
#include "samba/model/layers/retnet.h"
#include "samba/model/layer_config.h"
#include "samba/model/sublayer.h"

namespace samba {
namespace {

const std::map<char, SublayerSpec>& registry() {
  static const std::map<char, SublayerSpec> table = [] {
    std::map<char, SublayerSpec> t;
    for (const SublayerSpec& s : {
             mamba_spec(),
             mlp_spec(),
             mlp2_spec(),
             swa_spec(),
             full_attention_spec(),
             mega_s6_spec(),
             gla_spec(),
             retnet_spec(),
         }) {
      SublayerSpec named = s;
      named.name = layer_kind(s.symbol).name;  // throws for a module without a config side
      t.emplace(s.symbol, named);
    }
    return t;
  }();
  return table;
}

}  // namespace

const SublayerSpec& sublayer_spec(char symbol) {
  const auto& t = registry();
  auto it = t.find(symbol);
  if (it == t.end()) {
    std::string have;
    for (const auto& [c, s] : t) have += std::string(have.empty() ? "" : ", ") + "'" + c + "' (" + s.name + ")";
    fail("layer '", symbol, "' has no implementation in this build; implemented: ", have);
  }
  return it->second;
}

std::shared_ptr<SublayerImpl> make_sublayer(char symbol, const ModelConfig& cfg, int64_t layer_index) {
  return sublayer_spec(symbol).make(cfg, layer_index);
}

std::unique_ptr<LayerState> SublayerImpl::make_state(int64_t, const torch::TensorOptions&) {
  fail("layer '", name(), "' has no step-by-step (recurrent) form yet");
}

torch::Tensor SublayerImpl::step(const torch::Tensor&, LayerState&) {
  fail("layer '", name(), "' has no step-by-step (recurrent) form yet");
}

// The residual stream keeps its own dtype (fp32) whatever the mixer computes in.
torch::Tensor SublayerImpl::residual_forward(const torch::Tensor& x, RMSNormImpl& norm) {
  return x + forward(norm.forward(x)).to(x.scalar_type());
}

torch::Tensor SublayerImpl::residual_step(const torch::Tensor& x, RMSNormImpl& norm, LayerState& state) {
  return x + step(norm.forward(x), state).to(x.scalar_type());
}

}  // namespace samba
