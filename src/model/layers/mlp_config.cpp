// The SwiGLU layers' config side ('-' MLP with hidden mlp_hidden, '2' MLP2 with mlp2_hidden;
// both sizes are top-level keys, so no option section). Torch-free.
#include "samba/model/layer_config.h"

namespace samba {

void require_mlp_hidden(const ModelConfig& c, const KeyError& bad) {
  if (c.mlp_hidden <= 0) bad("mlp_hidden", "is required when the pattern has MLP ('-') or Mega-S6 ('S') sublayers");
}

LayerKind mlp_kind() { return {layer_char::kMLP, "mlp", {}, require_mlp_hidden}; }

LayerKind mlp2_kind() { return {layer_char::kMLP2, "mlp2", {}, nullptr}; }

}  // namespace samba
