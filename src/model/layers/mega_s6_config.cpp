// Mega-S6's config side ('S', the "mega:" section; its S6 reads the mamba section). Torch-free.
#include "samba/model/layer_config.h"

namespace samba {

const OptionSection& mega_options() {
  static const OptionSection s{
      "mega",
      [](YamlMap& m, ModelConfig& cfg) {
        MegaConfig& c = cfg.mega;
        m.read("z_dim", c.z_dim, 1, config_limits::kMaxInt);
        m.read("hidden_expand", c.hidden_expand, 1, 64);
        m.read("chunk_size", c.chunk_size, 1, config_limits::kMaxChunk);
      },
      [](const ModelConfig& c, const KeyError& bad) {
        if (c.mega.resolved_z_dim(c.d_model) % 2 != 0)
          bad("mega.z_dim", "(" + std::to_string(c.mega.resolved_z_dim(c.d_model)) +
                                ") must be even: the relative position bias rotates pairs of channels");
      },
      [](YAML::Emitter& e, const ModelConfig& c) {
        if (c.mega.z_dim > 0) e << YAML::Key << "z_dim" << YAML::Value << c.mega.z_dim;
        e << YAML::Key << "hidden_expand" << YAML::Value << c.mega.hidden_expand << YAML::Key << "chunk_size"
          << YAML::Value << c.mega.chunk_size;
      }};
  return s;
}

LayerKind mega_s6_kind() {
  // The reference block is always followed by an MLP.
  return {layer_char::kMegaS6, "mega_s6", {&mamba_options(), &mega_options()}, require_mlp_hidden};
}

}  // namespace samba
