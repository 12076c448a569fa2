// RetNet's config side ('R', the "retnet:" section; its default head count comes from
// attention.n_heads, so it reads the attention section too). Torch-free.
#include "samba/model/layer_config.h"

#include <cmath>

namespace samba {

const OptionSection& retnet_options() {
  static const OptionSection s{
      "retnet",
      [](YamlMap& m, ModelConfig& cfg) {
        RetNetConfig& c = cfg.retnet;
        m.read("n_heads", c.n_heads, 1, 4096);
        m.read("key_expand", c.key_expand, 1e-3, 64.0);
        m.read("value_expand", c.value_expand, 1e-3, 64.0);
        m.read("chunk_size", c.chunk_size, 1, 4096);
      },
      [](const ModelConfig& c, const KeyError& bad) {
        const int64_t h = c.retnet_heads();
        const int64_t dk = static_cast<int64_t>(std::llround(c.retnet.key_expand * static_cast<double>(c.d_model)));
        const int64_t dv = static_cast<int64_t>(std::llround(c.retnet.value_expand * static_cast<double>(c.d_model)));
        // RoPE rotates pairs of key channels: each head needs at least 2.
        if (dk < 2 * h) bad("retnet.key_expand", expand_range_message(c.retnet.key_expand, c.d_model, h, 2, "key"));
        if (dv < h) bad("retnet.value_expand", expand_range_message(c.retnet.value_expand, c.d_model, h, 1, "value"));
        if (dk % h != 0 || dv % h != 0 || (dk / h) % 2 != 0)
          bad("retnet.n_heads", "(" + std::to_string(h) + ") must divide the key dim (" + std::to_string(dk) +
                                    ", into even head dims) and value dim (" + std::to_string(dv) + ")");
      },
      [](YAML::Emitter& e, const ModelConfig& c) {
        if (c.has(layer_char::kRetNet)) e << YAML::Key << "n_heads" << YAML::Value << c.retnet_heads();
        e << YAML::Key << "key_expand" << YAML::Value << c.retnet.key_expand << YAML::Key << "value_expand"
          << YAML::Value << c.retnet.value_expand;
        e << YAML::Key << "chunk_size" << YAML::Value << c.retnet.chunk_size;
      }};
  return s;
}

LayerKind retnet_kind() { return {layer_char::kRetNet, "retnet", {&attention_options(), &retnet_options()}, nullptr}; }

}  // namespace samba
