// GLA's config side ('G', the "gla:" section). Torch-free.
#include "samba/model/layer_config.h"

#include <cmath>

namespace samba {

const OptionSection& gla_options() {
  static const OptionSection s{
      "gla",
      [](YamlMap& m, ModelConfig& cfg) {
        GLAConfig& c = cfg.gla;
        m.read("n_heads", c.n_heads, 1, 4096);
        m.read("key_expand", c.key_expand, 1e-3, 64.0);
        m.read("value_expand", c.value_expand, 1e-3, 64.0);
        m.read("gate_low_rank", c.gate_low_rank, 1, 4096);
        m.read("gate_normalizer", c.gate_normalizer, 1e-3, 1e6);
        m.read("chunk_size", c.chunk_size, 1, 4096);
        m.read("short_conv", c.short_conv);
        m.read("short_conv_kernel", c.short_conv_kernel, 1, 64);
      },
      [](const ModelConfig& c, const KeyError& bad) {
        const int64_t h = c.gla_heads();
        const int64_t dk = static_cast<int64_t>(std::llround(c.gla.key_expand * static_cast<double>(c.d_model)));
        const int64_t dv = static_cast<int64_t>(std::llround(c.gla.value_expand * static_cast<double>(c.d_model)));
        // Every head needs at least one key and one value channel (a zero-width key dim
        // divides by zero in the score scale and trains to NaN).
        if (dk < h) bad("gla.key_expand", expand_range_message(c.gla.key_expand, c.d_model, h, 1, "key"));
        if (dv < h) bad("gla.value_expand", expand_range_message(c.gla.value_expand, c.d_model, h, 1, "value"));
        if (dk % h != 0 || dv % h != 0)
          bad("gla.n_heads", "(" + std::to_string(h) + ") must divide the key dim (" + std::to_string(dk) +
                                 ") and value dim (" + std::to_string(dv) + ")");
      },
      [](YAML::Emitter& e, const ModelConfig& c) {
        e << YAML::Key << "n_heads" << YAML::Value << c.gla_heads() << YAML::Key << "key_expand" << YAML::Value
          << c.gla.key_expand;
        e << YAML::Key << "value_expand" << YAML::Value << c.gla.value_expand << YAML::Key << "gate_low_rank"
          << YAML::Value << c.gla.gate_low_rank;
        e << YAML::Key << "gate_normalizer" << YAML::Value << c.gla.gate_normalizer << YAML::Key << "chunk_size"
          << YAML::Value << c.gla.chunk_size;
        e << YAML::Key << "short_conv" << YAML::Value << c.gla.short_conv << YAML::Key << "short_conv_kernel"
          << YAML::Value << c.gla.short_conv_kernel;
      }};
  return s;
}

LayerKind gla_kind() { return {layer_char::kGLA, "gla", {&gla_options()}, nullptr}; }

}  // namespace samba
