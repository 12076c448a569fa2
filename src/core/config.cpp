#include "samba/core/config.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "samba/core/error.h"
#include "samba/core/overrides.h"
#include "samba/core/yaml_reader.h"

namespace samba {
namespace {

constexpr int64_t kMaxInt = std::numeric_limits<int32_t>::max();
constexpr double kInf = std::numeric_limits<double>::infinity();

struct CharName {
  char c;
  const char* name;
};
constexpr CharName kLayerNames[] = {
    {layer_char::kMamba, "mamba"},  {layer_char::kSlidingAttention, "swa"}, {layer_char::kFullAttention, "attention"},
    {layer_char::kGLA, "gla"},      {layer_char::kRetNet, "retnet"},        {layer_char::kMLP, "mlp"},
    {layer_char::kMegaS6, "mega_s6"}, {layer_char::kMLP2, "mlp2"},
};

std::string layer_choices() {
  std::string s;
  for (const auto& cn : kLayerNames) s += (s.empty() ? "" : ", ") + std::string("'") + cn.c + "' (" + cn.name + ")";
  return s;
}

// A layers list entry may be a pattern char ("M") or a name ("mamba").
char layer_from_token(const YamlMap& m, const std::string& token) {
  if (token.size() == 1 && valid_layer_chars().find(token[0]) != std::string::npos) return token[0];
  for (const auto& cn : kLayerNames)
    if (token == cn.name) return cn.c;
  m.error("layers", "unknown layer '" + token + "'; allowed: " + layer_choices());
}

void read_mamba(YamlMap m, MambaConfig& c) {
  m.read("d_state", c.d_state, 1, 1024);
  m.read("d_conv", c.d_conv, 1, 64);
  m.read("expand", c.expand, 1, 64);
  if (m.has("dt_rank") && m.node()["dt_rank"].IsScalar() && m.node()["dt_rank"].Scalar() == "auto") {
    m.allow("dt_rank");
    c.dt_rank = 0;
  } else {
    m.read("dt_rank", c.dt_rank, 1, kMaxInt);
  }
  m.read("dt_min", c.dt_min, 1e-8, 10.0);
  m.read("dt_max", c.dt_max, 1e-8, 10.0);
  m.read("dt_init_floor", c.dt_init_floor, 0.0, 10.0);
  m.read("conv_bias", c.conv_bias);
  m.read("proj_bias", c.proj_bias);
  if (c.dt_min > c.dt_max) m.error("dt_min", "must not exceed dt_max");
  m.finish();
}

void read_attention(YamlMap m, AttentionConfig& c) {
  m.read("n_heads", c.n_heads, 1, 4096);
  m.read("n_kv_heads", c.n_kv_heads, 1, 4096);
  m.read("head_dim", c.head_dim, 1, 4096);
  m.read("window", c.window, 1, std::numeric_limits<int64_t>::max());
  if (m.has("rope_base") && m.node()["rope_base"].IsScalar() && m.node()["rope_base"].Scalar() == "none") {
    m.allow("rope_base");
    c.rope = false;
  } else {
    m.read("rope_base", c.rope_base, 1.0, kInf);
  }
  m.read("rope", c.rope);
  m.read("short_conv", c.short_conv);
  m.read("short_conv_kernel", c.short_conv_kernel, 1, 64);
  m.read("qkv_bias", c.qkv_bias);
  m.finish();
}

void read_gla(YamlMap m, GLAConfig& c) {
  m.read("n_heads", c.n_heads, 1, 4096);
  m.read("key_expand", c.key_expand, 1e-3, 64.0);
  m.read("value_expand", c.value_expand, 1e-3, 64.0);
  m.read("gate_low_rank", c.gate_low_rank, 1, 4096);
  m.read("gate_normalizer", c.gate_normalizer, 1e-3, 1e6);
  m.read("chunk_size", c.chunk_size, 1, 4096);
  m.read("short_conv", c.short_conv);
  m.read("short_conv_kernel", c.short_conv_kernel, 1, 64);
  m.finish();
}

void read_retnet(YamlMap m, RetNetConfig& c) {
  m.read("n_heads", c.n_heads, 1, 4096);
  m.read("key_expand", c.key_expand, 1e-3, 64.0);
  m.read("value_expand", c.value_expand, 1e-3, 64.0);
  m.read("chunk_size", c.chunk_size, 1, 4096);
  m.finish();
}

void read_mega(YamlMap m, MegaConfig& c) {
  m.read("z_dim", c.z_dim, 1, kMaxInt);
  m.read("hidden_expand", c.hidden_expand, 1, 64);
  m.read("chunk_size", c.chunk_size, 1, std::numeric_limits<int64_t>::max());
  m.finish();
}

void apply_file(const YAML::Node& root, const std::string& origin, ModelConfig& cfg, int depth);

void apply_include(YamlMap& m, const std::string& origin, ModelConfig& cfg, int depth) {
  std::string inc;
  m.read("include", inc);
  if (inc.empty()) return;
  if (depth > 8) m.error("include", "includes nest deeper than 8 levels (an include cycle?)");
  std::filesystem::path base = std::filesystem::path(origin).parent_path() / inc;
  if (!std::filesystem::exists(base)) m.error("include", "file '" + base.string() + "' does not exist (paths are relative to the including file)");
  apply_file(load_yaml_file(base.string()), base.string(), cfg, depth + 1);
}

void apply_file(const YAML::Node& root, const std::string& origin, ModelConfig& cfg, int depth) {
  YamlMap m(root, origin);
  apply_include(m, origin, cfg, depth);
  m.read("name", cfg.name);
  m.read("vocab_size", cfg.vocab_size, 2, kMaxInt);
  m.read("d_model", cfg.d_model, 1, 1 << 20);
  if (m.has("pattern")) {
    m.read("pattern", cfg.pattern);
    if (cfg.pattern.empty()) m.error("pattern", "is empty; give one char per sublayer, e.g. \"M-*-\"");
    for (char c : cfg.pattern) {
      if (valid_layer_chars().find(c) == std::string::npos)
        m.error("pattern", std::string("has unknown layer character '") + c + "'; allowed: " + layer_choices());
    }
  } else {
    m.allow("pattern");
  }
  m.read("repeat", cfg.repeat, 1, 100000);
  if (m.has("layers")) {
    if (m.has("pattern")) m.error("layers", "give either 'pattern' (+ 'repeat') or an explicit 'layers' list, not both");
    YAML::Node list = m.node()["layers"];
    m.allow("layers");
    if (!list.IsSequence() || list.size() == 0)
      m.error("layers", "must be a non-empty list of layer names or chars, e.g. [mamba, mlp, swa, mlp]");
    cfg.pattern.clear();
    for (const auto& item : list) {
      if (!item.IsScalar()) m.error("layers", "entries must be layer names or chars");
      cfg.pattern += layer_from_token(m, item.Scalar());
    }
    cfg.repeat = 1;
  } else {
    m.allow("layers");
  }
  m.read("mlp_hidden", cfg.mlp_hidden, 0, kMaxInt);  // 0 = no MLP sublayers
  m.read("mlp2_hidden", cfg.mlp2_hidden, 1, kMaxInt);
  m.read("norm_eps", cfg.norm_eps, 0.0, 1.0);
  m.read("tie_embeddings", cfg.tie_embeddings);
  std::string init = to_string(cfg.init);
  m.read_choice("init", init, {"mamba", "tinyllama"});
  cfg.init = init == "mamba" ? InitScheme::Mamba : InitScheme::TinyLlama;
  m.read("init_std", cfg.init_std, 1e-8, 10.0);
  m.read("seq_len", cfg.seq_len, 1, std::numeric_limits<int64_t>::max());
  m.read("n_blocks", cfg.n_blocks, 1, kMaxInt);
  m.read("paper_params", cfg.paper_params, 0.0, kInf);
  read_mamba(m.child("mamba"), cfg.mamba);
  read_attention(m.child("attention"), cfg.attention);
  read_gla(m.child("gla"), cfg.gla);
  read_retnet(m.child("retnet"), cfg.retnet);
  read_mega(m.child("mega"), cfg.mega);
  m.finish();
}

ModelConfig finalize(ModelConfig cfg, const std::string& origin) {
  cfg.source = origin;
  cfg.layers.clear();
  for (int64_t i = 0; i < cfg.repeat; ++i) cfg.layers += cfg.pattern;
  if (cfg.name.empty()) cfg.name = std::filesystem::path(origin).stem().string();
  validate(cfg);
  return cfg;
}

}  // namespace

const char* to_string(InitScheme s) { return s == InitScheme::Mamba ? "mamba" : "tinyllama"; }

const std::string& valid_layer_chars() {
  static const std::string chars = [] {
    std::string s;
    for (const auto& cn : kLayerNames) s += cn.c;
    return s;
  }();
  return chars;
}

const char* layer_name(char c) {
  for (const auto& cn : kLayerNames)
    if (cn.c == c) return cn.name;
  fail("unknown layer character '", c, "'; allowed: ", layer_choices());
}

int64_t ModelConfig::blocks() const {
  if (n_blocks > 0) return n_blocks;
  int64_t mlps = std::count(layers.begin(), layers.end(), layer_char::kMLP);
  return mlps > 0 ? mlps : n_layers();
}
int64_t ModelConfig::mamba_dt_rank() const {
  return mamba.dt_rank > 0 ? mamba.dt_rank : (d_model + 15) / 16;
}
int64_t ModelConfig::attn_head_dim() const {
  return attention.head_dim > 0 ? attention.head_dim : (attention.n_heads > 0 ? d_model / attention.n_heads : 0);
}
int64_t ModelConfig::attn_kv_heads() const {
  return attention.n_kv_heads > 0 ? attention.n_kv_heads : attention.n_heads;
}
int64_t ModelConfig::gla_heads() const { return gla.n_heads > 0 ? gla.n_heads : std::max<int64_t>(1, d_model / 384); }
int64_t ModelConfig::retnet_heads() const {
  return retnet.n_heads > 0 ? retnet.n_heads : std::max<int64_t>(1, attention.n_heads / 2);
}
int64_t ModelConfig::mlp2_hidden_size() const { return mlp2_hidden > 0 ? mlp2_hidden : 2 * d_model; }

void validate(const ModelConfig& c) {
  const std::string& f = c.source;
  auto bad = [&](const std::string& key, const std::string& msg) { fail(f, ": key '", key, "': ", msg); };
  if (c.d_model <= 0) bad("d_model", "is required and must be positive");
  if (c.layers.empty()) bad("pattern", "is required: one char per sublayer, e.g. pattern: \"M-*-\" with repeat: 6");
  for (char ch : c.layers)
    if (valid_layer_chars().find(ch) == std::string::npos)
      bad("pattern", std::string("has unknown layer character '") + ch + "'; allowed: " + layer_choices());
  if ((c.has(layer_char::kMLP) || c.has(layer_char::kMegaS6)) && c.mlp_hidden <= 0)
    bad("mlp_hidden", "is required when the pattern has MLP ('-') or Mega-S6 ('S') sublayers");
  const bool attn = c.has(layer_char::kSlidingAttention) || c.has(layer_char::kFullAttention);
  if (attn || c.has(layer_char::kRetNet)) {
    const auto& a = c.attention;
    if (a.n_heads <= 0) bad("attention.n_heads", "is required for attention / RetNet layers");
    if (a.head_dim <= 0 && c.d_model % a.n_heads != 0)
      bad("attention.n_heads", "(" + std::to_string(a.n_heads) + ") must divide d_model (" + std::to_string(c.d_model) +
                                   "), or set attention.head_dim");
    if (c.attn_kv_heads() > a.n_heads || a.n_heads % c.attn_kv_heads() != 0)
      bad("attention.n_kv_heads", "(" + std::to_string(c.attn_kv_heads()) + ") must divide n_heads (" +
                                      std::to_string(a.n_heads) + ")");
    if (a.rope && c.attn_head_dim() % 2 != 0) bad("attention.head_dim", "must be even for RoPE (or set rope: false)");
  }
  if (c.has(layer_char::kSlidingAttention) && c.attention.window > c.seq_len)
    bad("attention.window", "(" + std::to_string(c.attention.window) + ") exceeds seq_len (" + std::to_string(c.seq_len) +
                                "): a window longer than the sequence is full attention; use 'A' layers or a smaller window");
  if (c.has(layer_char::kGLA)) {
    int64_t h = c.gla_heads();
    int64_t dk = static_cast<int64_t>(std::llround(c.gla.key_expand * c.d_model));
    int64_t dv = static_cast<int64_t>(std::llround(c.gla.value_expand * c.d_model));
    if (dk % h != 0 || dv % h != 0)
      bad("gla.n_heads", "(" + std::to_string(h) + ") must divide the key dim (" + std::to_string(dk) + ") and value dim (" +
                             std::to_string(dv) + ")");
  }
  if (c.has(layer_char::kMegaS6) && c.mega.resolved_z_dim(c.d_model) % 2 != 0)
    bad("mega.z_dim", "(" + std::to_string(c.mega.resolved_z_dim(c.d_model)) +
                          ") must be even: the relative position bias rotates pairs of channels");
  if (c.has(layer_char::kRetNet)) {
    int64_t h = c.retnet_heads();
    int64_t dk = static_cast<int64_t>(std::llround(c.retnet.key_expand * c.d_model));
    int64_t dv = static_cast<int64_t>(std::llround(c.retnet.value_expand * c.d_model));
    if (dk % h != 0 || dv % h != 0 || (dk / h) % 2 != 0)
      bad("retnet.n_heads", "(" + std::to_string(h) + ") must divide the key dim (" + std::to_string(dk) +
                                ", into even head dims) and value dim (" + std::to_string(dv) + ")");
  }
}

ModelConfig parse_model_config(const std::string& yaml_text, const std::string& origin) {
  ModelConfig cfg;
  apply_file(load_yaml_text(yaml_text, origin), origin, cfg, 0);
  return finalize(std::move(cfg), origin);
}

ModelConfig load_model_config(const std::string& path, const std::vector<std::string>& overrides,
                              const std::string& override_prefix) {
  ModelConfig cfg;
  YAML::Node root = load_yaml_file(path);
  apply_overrides(root, overrides, path, override_prefix);  // before validation: same checks as the file
  apply_file(root, path, cfg, 0);
  return finalize(std::move(cfg), path);
}

std::string to_yaml(const ModelConfig& c) {
  YAML::Emitter e;
  e << YAML::BeginMap;
  e << YAML::Key << "name" << YAML::Value << c.name;
  e << YAML::Key << "vocab_size" << YAML::Value << c.vocab_size;
  e << YAML::Key << "d_model" << YAML::Value << c.d_model;
  e << YAML::Key << "pattern" << YAML::Value << YAML::DoubleQuoted << c.layers;
  e << YAML::Key << "mlp_hidden" << YAML::Value << c.mlp_hidden;
  e << YAML::Key << "mlp2_hidden" << YAML::Value << c.mlp2_hidden_size();
  e << YAML::Key << "norm_eps" << YAML::Value << c.norm_eps;
  e << YAML::Key << "tie_embeddings" << YAML::Value << c.tie_embeddings;
  e << YAML::Key << "init" << YAML::Value << to_string(c.init);
  e << YAML::Key << "init_std" << YAML::Value << c.init_std;
  e << YAML::Key << "seq_len" << YAML::Value << c.seq_len;
  e << YAML::Key << "n_blocks" << YAML::Value << c.blocks();
  if (c.paper_params > 0) e << YAML::Key << "paper_params" << YAML::Value << c.paper_params;
  e << YAML::Key << "mamba" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "d_state" << YAML::Value << c.mamba.d_state << YAML::Key << "d_conv" << YAML::Value << c.mamba.d_conv;
  e << YAML::Key << "expand" << YAML::Value << c.mamba.expand << YAML::Key << "dt_rank" << YAML::Value << c.mamba_dt_rank();
  e << YAML::Key << "dt_min" << YAML::Value << c.mamba.dt_min << YAML::Key << "dt_max" << YAML::Value << c.mamba.dt_max;
  e << YAML::Key << "dt_init_floor" << YAML::Value << c.mamba.dt_init_floor;
  e << YAML::Key << "conv_bias" << YAML::Value << c.mamba.conv_bias << YAML::Key << "proj_bias" << YAML::Value << c.mamba.proj_bias;
  e << YAML::EndMap;
  e << YAML::Key << "attention" << YAML::Value << YAML::BeginMap;
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
  e << YAML::EndMap;
  e << YAML::Key << "gla" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "n_heads" << YAML::Value << c.gla_heads() << YAML::Key << "key_expand" << YAML::Value << c.gla.key_expand;
  e << YAML::Key << "value_expand" << YAML::Value << c.gla.value_expand << YAML::Key << "gate_low_rank" << YAML::Value << c.gla.gate_low_rank;
  e << YAML::Key << "gate_normalizer" << YAML::Value << c.gla.gate_normalizer << YAML::Key << "chunk_size" << YAML::Value << c.gla.chunk_size;
  e << YAML::Key << "short_conv" << YAML::Value << c.gla.short_conv << YAML::Key << "short_conv_kernel" << YAML::Value << c.gla.short_conv_kernel;
  e << YAML::EndMap;
  e << YAML::Key << "retnet" << YAML::Value << YAML::BeginMap;
  if (c.has(layer_char::kRetNet)) e << YAML::Key << "n_heads" << YAML::Value << c.retnet_heads();
  e << YAML::Key << "key_expand" << YAML::Value << c.retnet.key_expand << YAML::Key << "value_expand" << YAML::Value << c.retnet.value_expand;
  e << YAML::Key << "chunk_size" << YAML::Value << c.retnet.chunk_size;
  e << YAML::EndMap;
  e << YAML::Key << "mega" << YAML::Value << YAML::BeginMap;
  if (c.mega.z_dim > 0) e << YAML::Key << "z_dim" << YAML::Value << c.mega.z_dim;
  e << YAML::Key << "hidden_expand" << YAML::Value << c.mega.hidden_expand << YAML::Key << "chunk_size" << YAML::Value << c.mega.chunk_size;
  e << YAML::EndMap;
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

}  // namespace samba
