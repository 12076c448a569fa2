#include "samba/core/config.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <sstream>

#include "samba/core/error.h"
#include "samba/core/overrides.h"
#include "samba/core/yaml_reader.h"
#include "samba/model/layer_config.h"

namespace samba {
namespace {

using config_limits::kMaxInt;
using config_limits::kMaxSeqLen;
constexpr double kMaxCount = 1e15;

std::string layer_choices() {
  std::string s;
  for (const auto& k : layer_kinds()) s += (s.empty() ? "" : ", ") + std::string("'") + k.symbol + "' (" + k.name + ")";
  return s;
}

// A layers list entry may be a pattern char ("M") or a name ("mamba").
char layer_from_token(const YamlMap& m, const std::string& token) {
  if (token.size() == 1 && valid_layer_chars().find(token[0]) != std::string::npos) return token[0];
  for (const auto& k : layer_kinds())
    if (token == k.name) return k.symbol;
  m.error("layers", "unknown layer '" + token + "'; allowed: " + layer_choices());
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
  m.read("seq_len", cfg.seq_len, 1, kMaxSeqLen);
  m.read("n_blocks", cfg.n_blocks, 1, kMaxInt);
  m.read("paper_params", cfg.paper_params, 0.0, kMaxCount);
  m.read("official_name", cfg.official_name);
  m.read("official_params", cfg.official_params, 0, static_cast<int64_t>(kMaxCount));
  for (const OptionSection* section : option_sections()) {  // each layer file reads its own section
    YamlMap child = m.child(section->key);
    section->read(child, cfg);
    child.finish();
  }
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
    for (const auto& k : layer_kinds()) s += k.symbol;
    return s;
  }();
  return chars;
}

const char* layer_name(char c) { return layer_kind(c).name; }

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
  const KeyError bad = [&](const std::string& key, const std::string& msg) { fail(f, ": key '", key, "': ", msg); };
  if (c.d_model <= 0) bad("d_model", "is required and must be positive");
  if (c.layers.empty()) bad("pattern", "is required: one char per sublayer, e.g. pattern: \"M-*-\" with repeat: 6");
  for (char ch : c.layers)
    if (valid_layer_chars().find(ch) == std::string::npos)
      bad("pattern", std::string("has unknown layer character '") + ch + "'; allowed: " + layer_choices());
  // Each option section once if any layer in the pattern reads it, then each kind's own checks.
  for (const OptionSection* section : option_sections()) {
    if (!section->validate) continue;
    bool used = false;
    for (const auto& k : layer_kinds())
      for (const OptionSection* s : k.sections) used = used || (s == section && c.has(k.symbol));
    if (used) section->validate(c, bad);
  }
  for (const auto& k : layer_kinds())
    if (k.validate && c.has(k.symbol)) k.validate(c, bad);
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
  if (!c.official_name.empty()) e << YAML::Key << "official_name" << YAML::Value << c.official_name;
  if (c.official_params > 0) e << YAML::Key << "official_params" << YAML::Value << c.official_params;
  for (const OptionSection* section : option_sections()) {
    e << YAML::Key << section->key << YAML::Value << YAML::BeginMap;
    section->write(e, c);
    e << YAML::EndMap;
  }
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

}  // namespace samba
