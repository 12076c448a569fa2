// Mamba's config side ('M', the "mamba:" section; Mega-S6's S6 reads it too). Torch-free.
#include "samba/model/layer_config.h"

namespace samba {

const OptionSection& mamba_options() {
  static const OptionSection s{
      "mamba",
      [](YamlMap& m, ModelConfig& cfg) {
        MambaConfig& c = cfg.mamba;
        m.read("d_state", c.d_state, 1, 1024);
        m.read("d_conv", c.d_conv, 1, 64);
        m.read("expand", c.expand, 1, 64);
        if (m.has("dt_rank") && m.node()["dt_rank"].IsScalar() && m.node()["dt_rank"].Scalar() == "auto") {
          m.allow("dt_rank");
          c.dt_rank = 0;
        } else {
          m.read("dt_rank", c.dt_rank, 1, config_limits::kMaxInt);
        }
        m.read("dt_min", c.dt_min, 1e-8, 10.0);
        m.read("dt_max", c.dt_max, 1e-8, 10.0);
        m.read("dt_init_floor", c.dt_init_floor, 0.0, 10.0);
        m.read("conv_bias", c.conv_bias);
        m.read("proj_bias", c.proj_bias);
        if (c.dt_min > c.dt_max) m.error("dt_min", "must not exceed dt_max");
      },
      nullptr,
      [](YAML::Emitter& e, const ModelConfig& c) {
        e << YAML::Key << "d_state" << YAML::Value << c.mamba.d_state << YAML::Key << "d_conv" << YAML::Value << c.mamba.d_conv;
        e << YAML::Key << "expand" << YAML::Value << c.mamba.expand << YAML::Key << "dt_rank" << YAML::Value << c.mamba_dt_rank();
        e << YAML::Key << "dt_min" << YAML::Value << c.mamba.dt_min << YAML::Key << "dt_max" << YAML::Value << c.mamba.dt_max;
        e << YAML::Key << "dt_init_floor" << YAML::Value << c.mamba.dt_init_floor;
        e << YAML::Key << "conv_bias" << YAML::Value << c.mamba.conv_bias << YAML::Key << "proj_bias" << YAML::Value
          << c.mamba.proj_bias;
      }};
  return s;
}

LayerKind mamba_kind() { return {layer_char::kMamba, "mamba", {&mamba_options()}, nullptr}; }

}  // namespace samba
