// The attention layers' config side ('*' sliding window, 'A' full; the "attention:" section,
// whose n_heads also sets RetNet's default head count). Torch-free.
#include "samba/model/layer_config.h"

#include <limits>

namespace samba {

const OptionSection& attention_options() {
  static const OptionSection s{
      "attention",
      [](YamlMap& m, ModelConfig& cfg) {
        AttentionConfig& c = cfg.attention;
        m.read("n_heads", c.n_heads, 1, 4096);
        m.read("n_kv_heads", c.n_kv_heads, 1, 4096);
        m.read("head_dim", c.head_dim, 1, 4096);
        m.read("window", c.window, 1, std::numeric_limits<int64_t>::max());  // validate: <= seq_len (<= 2^24)
        if (m.has("rope_base") && m.node()["rope_base"].IsScalar() && m.node()["rope_base"].Scalar() == "none") {
          m.allow("rope_base");
          c.rope = false;
        } else {
          m.read("rope_base", c.rope_base, 1.0, config_limits::kMaxRopeBase);
        }
        m.read("rope", c.rope);
        m.read("short_conv", c.short_conv);
        m.read("short_conv_kernel", c.short_conv_kernel, 1, 64);
        m.read("qkv_bias", c.qkv_bias);
      },
      [](const ModelConfig& c, const KeyError& bad) {
        const auto& a = c.attention;
        if (a.n_heads <= 0) bad("attention.n_heads", "is required for attention / RetNet layers");
        if (a.head_dim <= 0 && c.d_model % a.n_heads != 0)
          bad("attention.n_heads", "(" + std::to_string(a.n_heads) + ") must divide d_model (" +
                                       std::to_string(c.d_model) + "), or set attention.head_dim");
        if (c.attn_kv_heads() > a.n_heads || a.n_heads % c.attn_kv_heads() != 0)
          bad("attention.n_kv_heads", "(" + std::to_string(c.attn_kv_heads()) + ") must divide n_heads (" +
                                          std::to_string(a.n_heads) + ")");
        if (a.rope && c.attn_head_dim() % 2 != 0) bad("attention.head_dim", "must be even for RoPE (or set rope: false)");
      },
      [](YAML::Emitter& e, const ModelConfig& c) {
        if (c.attention.n_heads > 0) {
          e << YAML::Key << "n_heads" << YAML::Value << c.attention.n_heads;
          e << YAML::Key << "n_kv_heads" << YAML::Value << c.attn_kv_heads();
          e << YAML::Key << "head_dim" << YAML::Value << c.attn_head_dim();
        }
        e << YAML::Key << "window" << YAML::Value << c.attention.window;
        e << YAML::Key << "rope" << YAML::Value << c.attention.rope;
        e << YAML::Key << "rope_base" << YAML::Value << c.attention.rope_base;
        e << YAML::Key << "short_conv" << YAML::Value << c.attention.short_conv;
        e << YAML::Key << "short_conv_kernel" << YAML::Value << c.attention.short_conv_kernel;
        e << YAML::Key << "qkv_bias" << YAML::Value << c.attention.qkv_bias;
      }};
  return s;
}

LayerKind swa_kind() {
  return {layer_char::kSlidingAttention, "swa", {&attention_options()}, [](const ModelConfig& c, const KeyError& bad) {
            if (c.attention.window > c.seq_len)
              bad("attention.window", "(" + std::to_string(c.attention.window) + ") exceeds seq_len (" +
                                          std::to_string(c.seq_len) +
                                          "): a window longer than the sequence is full attention; use 'A' layers or "
                                          "a smaller window");
          }};
}

LayerKind full_attention_kind() { return {layer_char::kFullAttention, "attention", {&attention_options()}, nullptr}; }

}  // namespace samba
