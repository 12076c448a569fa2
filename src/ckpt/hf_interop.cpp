// Hugging Face layouts (hf_interop.h). Names and config keys as read from transformers'
// llama / mistral / mamba models and FLA's fla/models/samba (documented in docs/FORMATS.md).
#include "samba/ckpt/hf_interop.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "samba/ckpt/checkpoint.h"
#include "samba/core/error.h"
#include "samba/io/files.h"
#include "samba/model/layer_config.h"

namespace samba::ckpt::hf {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

// Where the sublayers of one block live in a family's names. Llama, Mistral and FLA's Samba
// group (mixer, MLP) pairs into one block; Mamba has one sublayer per block.
struct Scheme {
  const char* embed;
  const char* final_norm;
  const char* layer_prefix;  // + "<block>."
  const char* mixer_norm;
  const char* mixer;
  const char* mlp_norm;  // nullptr: no MLP sublayers
  const char* mlp;
  int64_t sublayers_per_block;
};

const Scheme& scheme(Family f) {
  static const Scheme llama{"model.embed_tokens.weight", "model.norm.weight", "model.layers.",
                            "input_layernorm.weight", "self_attn.", "post_attention_layernorm.weight", "mlp.", 2};
  static const Scheme mamba{"backbone.embeddings.weight", "backbone.norm_f.weight", "backbone.layers.",
                            "norm.weight", "mixer.", nullptr, nullptr, 1};
  static const Scheme fla{"backbone.embeddings.weight", "backbone.norm_f.weight", "backbone.layers.",
                          "mixer_norm.weight", "mixer.", "mlp_norm.weight", "mlp.", 2};
  switch (f) {
    case Family::Llama:
    case Family::Mistral:
      return llama;
    case Family::Mamba:
      return mamba;
    case Family::FlaSamba:
      return fla;
  }
  fail("unknown Hugging Face family");
}

// Our SwiGLU names (gate, up, down) against theirs (gate_proj, up_proj, down_proj); every
// mixer tensor keeps its name (q_proj..o_proj, in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj).
const std::pair<const char*, const char*> kMlpNames[] = {
    {"gate.weight", "gate_proj.weight"}, {"up.weight", "up_proj.weight"}, {"down.weight", "down_proj.weight"}};

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// "12.rest" -> (12, "rest"); throws when there is no index.
std::pair<int64_t, std::string> split_index(const std::string& s, const std::string& whole) {
  const size_t dot = s.find('.');
  check(dot != std::string::npos && dot > 0 && s.find_first_not_of("0123456789") == dot,
        "tensor name '", whole, "' has no layer index where one was expected");
  return {std::stoll(s.substr(0, dot)), s.substr(dot + 1)};
}

bool mlp_at(const ModelConfig& cfg, int64_t sublayer) { return cfg.layers[sublayer] == layer_char::kMLP; }

// Why a pattern has no HF class, for the error messages.
const char* kFamilies =
    "transformers' Llama (\"A-\" x n) and Mistral (\"*-\" x n), transformers' Mamba (\"M\" x n), FLA's Samba "
    "(blocks of M, * or A, each followed by an MLP '-')";

bool is_pairs(const std::string& layers) {
  if (layers.empty() || layers.size() % 2 != 0) return false;
  for (size_t i = 0; i < layers.size(); i += 2) {
    const char m = layers[i];
    if (layers[i + 1] != layer_char::kMLP) return false;
    if (m != layer_char::kMamba && m != layer_char::kSlidingAttention && m != layer_char::kFullAttention) return false;
  }
  return true;
}

bool all_mixers(const std::string& layers, char c) {
  for (size_t i = 0; i < layers.size(); i += 2)
    if (layers[i] != c) return false;
  return true;
}

// FLA's GatedMLP derives its width from hidden_ratio: 256 * ceil(int(d * r * 2 / 3) / 256).
int64_t fla_mlp_width(int64_t d, double ratio) {
  const auto v = static_cast<int64_t>(static_cast<double>(d) * ratio * 2.0 / 3.0);
  return 256 * ((v + 255) / 256);
}

double fla_hidden_ratio(const ModelConfig& cfg) {
  return static_cast<double>(cfg.mlp_hidden) * 3.0 / (2.0 * static_cast<double>(cfg.d_model));
}

void check_attention_exportable(const ModelConfig& cfg, const char* family) {
  const auto& a = cfg.attention;
  check(a.rope, cfg.source, ": NoPE attention has no ", family, " class (it always applies RoPE); export with --format samba");
  check(!a.short_conv, cfg.source, ": attention.short_conv has no ", family, " equivalent; export with --format samba");
  check(!a.qkv_bias, cfg.source, ": attention.qkv_bias has no ", family,
        " equivalent here (its attention_bias also biases o_proj); export with --format samba");
}

ojson attention_spec(const ModelConfig& cfg, const std::vector<int64_t>& blocks, bool sliding) {
  ojson s;
  s["layers"] = blocks;
  s["num_heads"] = cfg.attention.n_heads;
  s["num_kv_heads"] = cfg.attn_kv_heads();
  s["qkv_bias"] = false;
  s["window_size"] = sliding ? ojson(cfg.attention.window) : ojson(nullptr);
  s["rope_theta"] = cfg.attention.rope_base;
  return s;
}

// ---- import ------------------------------------------------------------------------------

const nlohmann::json& need(const nlohmann::json& j, const char* key, const std::string& origin) {
  check(j.contains(key) && !j[key].is_null(), origin, ": key '", key, "' is missing; it is not a complete ",
        "Hugging Face config.json");
  return j[key];
}

int64_t need_int(const nlohmann::json& j, const char* key, const std::string& origin) {
  const auto& v = need(j, key, origin);
  check(v.is_number_integer(), origin, ": key '", key, "' must be an integer, got ", v.dump());
  return v.get<int64_t>();
}

int64_t get_int(const nlohmann::json& j, const char* key, int64_t fallback, const std::string& origin) {
  return j.contains(key) && !j[key].is_null() ? need_int(j, key, origin) : fallback;
}

double get_number(const nlohmann::json& j, const char* key, double fallback, const std::string& origin) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  check(j[key].is_number(), origin, ": key '", key, "' must be a number, got ", j[key].dump());
  return j[key].get<double>();
}

bool get_bool(const nlohmann::json& j, const char* key, bool fallback, const std::string& origin) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  check(j[key].is_boolean(), origin, ": key '", key, "' must be true or false, got ", j[key].dump());
  return j[key].get<bool>();
}

void refuse_if(bool bad, const std::string& origin, const std::string& what) {
  check(!bad, origin, ": ", what, " has no equivalent in samba's layers; this checkpoint cannot be imported");
}

// The rope base, from rope_theta (transformers 4) or rope_parameters (transformers 5); scaled
// RoPE variants (llama3, yarn, ...) are refused.
double rope_base(const nlohmann::json& j, const std::string& origin) {
  double base = get_number(j, "rope_theta", 10000.0, origin);
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    if (!j.contains(key) || j[key].is_null()) continue;
    const auto& p = j[key];
    check(p.is_object(), origin, ": key '", key, "' must be an object");
    const std::string type = p.value("rope_type", p.value("type", std::string("default")));
    refuse_if(type != "default", origin, std::string(key) + ".rope_type '" + type + "'");
    if (p.contains("rope_theta")) base = get_number(p, "rope_theta", base, origin);
  }
  return base;
}

// Our model YAML for an HF config; parse_model_config then checks it like any config.
std::string model_yaml(const nlohmann::json& j, const std::string& type, const std::string& name,
                       const std::string& origin) {
  YAML::Emitter e;
  e << YAML::BeginMap;
  e << YAML::Key << "name" << YAML::Value << name;
  e << YAML::Key << "vocab_size" << YAML::Value << need_int(j, "vocab_size", origin);
  e << YAML::Key << "d_model" << YAML::Value << need_int(j, "hidden_size", origin);
  const int64_t layers = need_int(j, "num_hidden_layers", origin);
  const std::string act = j.value("hidden_act", std::string("silu"));
  refuse_if(act != "silu" && act != "swish", origin, "hidden_act '" + act + "'");
  const int64_t max_pos = get_int(j, "max_position_embeddings", 4096, origin);
  constexpr int64_t kMaxSeqLen = config_limits::kMaxSeqLen;
  int64_t seq_len = std::min(std::max<int64_t>(max_pos, 1), kMaxSeqLen);
  if (type == "mamba") {
    const int64_t d = need_int(j, "hidden_size", origin), expand = get_int(j, "expand", 2, origin);
    const int64_t inner = get_int(j, "intermediate_size", expand * d, origin);
    refuse_if(inner != expand * d, origin, "intermediate_size != expand * hidden_size");
    e << YAML::Key << "pattern" << YAML::Value << "M" << YAML::Key << "repeat" << YAML::Value << layers;
    e << YAML::Key << "mlp_hidden" << YAML::Value << 0;
    e << YAML::Key << "norm_eps" << YAML::Value << get_number(j, "layer_norm_epsilon", 1e-5, origin);
    e << YAML::Key << "tie_embeddings" << YAML::Value << get_bool(j, "tie_word_embeddings", true, origin);
    e << YAML::Key << "seq_len" << YAML::Value << seq_len;
    e << YAML::Key << "mamba" << YAML::Value << YAML::BeginMap;
    e << YAML::Key << "d_state" << YAML::Value << get_int(j, "state_size", 16, origin);
    e << YAML::Key << "d_conv" << YAML::Value << get_int(j, "conv_kernel", 4, origin);
    e << YAML::Key << "expand" << YAML::Value << expand;
    e << YAML::Key << "dt_rank" << YAML::Value << get_int(j, "time_step_rank", (d + 15) / 16, origin);
    e << YAML::Key << "conv_bias" << YAML::Value << get_bool(j, "use_conv_bias", true, origin);
    e << YAML::Key << "proj_bias" << YAML::Value << get_bool(j, "use_bias", false, origin);
    e << YAML::EndMap;
  } else {
    refuse_if(get_bool(j, "attention_bias", false, origin), origin, "attention_bias: true");
    refuse_if(get_bool(j, "mlp_bias", false, origin), origin, "mlp_bias: true");
    const int64_t heads = need_int(j, "num_attention_heads", origin);
    const int64_t window = type == "mistral" ? get_int(j, "sliding_window", 0, origin) : 0;
    if (window > 0 && window > seq_len) seq_len = std::min(window, kMaxSeqLen);
    e << YAML::Key << "pattern" << YAML::Value << YAML::DoubleQuoted << (window > 0 ? "*-" : "A-");
    e << YAML::Key << "repeat" << YAML::Value << layers;
    e << YAML::Key << "mlp_hidden" << YAML::Value << need_int(j, "intermediate_size", origin);
    e << YAML::Key << "norm_eps" << YAML::Value << get_number(j, "rms_norm_eps", 1e-6, origin);
    e << YAML::Key << "tie_embeddings" << YAML::Value << get_bool(j, "tie_word_embeddings", false, origin);
    e << YAML::Key << "init" << YAML::Value << "tinyllama";
    e << YAML::Key << "seq_len" << YAML::Value << seq_len;
    e << YAML::Key << "attention" << YAML::Value << YAML::BeginMap;
    e << YAML::Key << "n_heads" << YAML::Value << heads;
    e << YAML::Key << "n_kv_heads" << YAML::Value << get_int(j, "num_key_value_heads", heads, origin);
    e << YAML::Key << "head_dim" << YAML::Value
      << get_int(j, "head_dim", need_int(j, "hidden_size", origin) / heads, origin);
    if (window > 0) e << YAML::Key << "window" << YAML::Value << window;
    e << YAML::Key << "rope_base" << YAML::Value << rope_base(j, origin);
    e << YAML::EndMap;
  }
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

// Tensors of model.safetensors, or of every shard model.safetensors.index.json names.
std::map<std::string, torch::Tensor> read_weights(const fs::path& dir) {
  if (fs::exists(dir / "model.safetensors")) return load_tensors((dir / "model.safetensors").string());
  const fs::path index = dir / "model.safetensors.index.json";
  check(fs::exists(index), dir.string(), " has neither model.safetensors nor model.safetensors.index.json",
        fs::exists(dir / "pytorch_model.bin") ? " (pytorch_model.bin is not read: save it with safe_serialization=True)"
                                              : "");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(io::read_file(index.string()));
  } catch (const nlohmann::json::exception& e) {
    fail(index.string(), " is not valid JSON (", e.what(), ")");
  }
  check(j.contains("weight_map") && j["weight_map"].is_object(), index.string(), " has no 'weight_map' object");
  std::set<std::string> shards;
  const auto& map = j["weight_map"];
  for (auto e = map.begin(); e != map.end(); ++e) {
    check(e.value().is_string(), index.string(), ": weight_map['", e.key(), "'] is not a file name");
    const std::string f = e.value().get<std::string>();
    check(f.find('/') == std::string::npos, index.string(), ": shard '", f, "' must be a file in the same directory");
    shards.insert(f);
  }
  std::map<std::string, torch::Tensor> out;
  for (const auto& shard : shards) {
    auto part = load_tensors((dir / shard).string());
    for (auto& [name, t] : part) out.emplace(name, std::move(t));
  }
  return out;
}

}  // namespace

const char* to_string(Family f) {
  switch (f) {
    case Family::Llama:
      return "llama";
    case Family::Mistral:
      return "mistral";
    case Family::Mamba:
      return "mamba";
    case Family::FlaSamba:
      return "samba";
  }
  return "?";
}

Family family_of(const ModelConfig& cfg) {
  const std::string& l = cfg.layers;
  if (l.find_first_not_of(layer_char::kMamba) == std::string::npos) return Family::Mamba;
  check(is_pairs(l), cfg.source, ": pattern \"", cfg.pattern, "\" has no Hugging Face class; the classes are ", kFamilies,
        "; export it with --format samba");
  const bool any_attention = l.find_first_of("*A") != std::string::npos;
  if (all_mixers(l, layer_char::kFullAttention) || all_mixers(l, layer_char::kSlidingAttention)) {
    check_attention_exportable(cfg, "transformers Llama/Mistral");
    return all_mixers(l, layer_char::kFullAttention) ? Family::Llama : Family::Mistral;
  }
  if (any_attention) {
    check_attention_exportable(cfg, "FLA Samba");
    check(cfg.attn_head_dim() * cfg.attention.n_heads == cfg.d_model, cfg.source,
          ": FLA's attention projects q to hidden_size, so attention.head_dim x n_heads must equal d_model (",
          cfg.attn_head_dim(), " x ", cfg.attention.n_heads, " != ", cfg.d_model, "); export with --format samba");
  }
  check(fla_mlp_width(cfg.d_model, fla_hidden_ratio(cfg)) == cfg.mlp_hidden, cfg.source,
        ": FLA's Samba sizes its MLP as a multiple of 256 from hidden_ratio; mlp_hidden ", cfg.mlp_hidden,
        " cannot be written that way (use a multiple of 256) or export with --format samba");
  return Family::FlaSamba;
}

std::string config_json(const ModelConfig& cfg, Family family, const std::string& dtype) {
  ojson j;
  const int64_t blocks = cfg.n_layers() / scheme(family).sublayers_per_block;
  if (family == Family::Llama || family == Family::Mistral) {
    const bool mistral = family == Family::Mistral;
    j["architectures"] = ojson::array({mistral ? "MistralForCausalLM" : "LlamaForCausalLM"});
    j["model_type"] = mistral ? "mistral" : "llama";
    j["vocab_size"] = cfg.vocab_size;
    j["hidden_size"] = cfg.d_model;
    j["intermediate_size"] = cfg.mlp_hidden;
    j["num_hidden_layers"] = blocks;
    j["num_attention_heads"] = cfg.attention.n_heads;
    j["num_key_value_heads"] = cfg.attn_kv_heads();
    j["head_dim"] = cfg.attn_head_dim();
    j["hidden_act"] = "silu";
    j["max_position_embeddings"] = cfg.seq_len;
    j["rms_norm_eps"] = cfg.norm_eps;
    j["rope_theta"] = cfg.attention.rope_base;
    if (mistral) j["sliding_window"] = cfg.attention.window;
    j["attention_bias"] = false;
    j["attention_dropout"] = 0.0;
    if (!mistral) j["mlp_bias"] = false;
    j["initializer_range"] = 0.02;
  } else if (family == Family::Mamba) {
    j["architectures"] = ojson::array({"MambaForCausalLM"});
    j["model_type"] = "mamba";
    j["vocab_size"] = cfg.vocab_size;
    j["hidden_size"] = cfg.d_model;
    j["state_size"] = cfg.mamba.d_state;
    j["num_hidden_layers"] = blocks;
    j["layer_norm_epsilon"] = cfg.norm_eps;
    j["expand"] = cfg.mamba.expand;
    j["intermediate_size"] = cfg.mamba.expand * cfg.d_model;
    j["conv_kernel"] = cfg.mamba.d_conv;
    j["use_bias"] = cfg.mamba.proj_bias;
    j["use_conv_bias"] = cfg.mamba.conv_bias;
    j["hidden_act"] = "silu";
    j["time_step_rank"] = cfg.mamba_dt_rank();
    j["residual_in_fp32"] = true;
  } else {
    j["architectures"] = ojson::array({"SambaForCausalLM"});
    j["model_type"] = "samba";
    j["vocab_size"] = cfg.vocab_size;
    j["hidden_size"] = cfg.d_model;
    j["state_size"] = cfg.mamba.d_state;
    j["num_hidden_layers"] = blocks;
    j["norm_eps"] = cfg.norm_eps;
    j["expand"] = cfg.mamba.expand;
    j["conv_kernel"] = cfg.mamba.d_conv;
    j["use_bias"] = cfg.mamba.proj_bias;
    j["use_conv_bias"] = cfg.mamba.conv_bias;
    j["hidden_act"] = "swish";
    j["time_step_rank"] = cfg.mamba_dt_rank();
    j["max_position_embeddings"] = cfg.seq_len;
    std::vector<int64_t> sliding, full;
    for (int64_t b = 0; b < blocks; ++b) {
      const char c = cfg.layers[2 * b];
      if (c == layer_char::kSlidingAttention) sliding.push_back(b);
      if (c == layer_char::kFullAttention) full.push_back(b);
    }
    // One spec per attention kind (FLA accepts a spec or a list of them).
    ojson specs = ojson::array();
    if (!sliding.empty()) specs.push_back(attention_spec(cfg, sliding, true));
    if (!full.empty()) specs.push_back(attention_spec(cfg, full, false));
    j["attn"] = specs.empty() ? ojson(nullptr) : specs.size() == 1 ? specs[0] : specs;
    j["hidden_ratio"] = fla_hidden_ratio(cfg);
    j["residual_in_fp32"] = true;
  }
  j["tie_word_embeddings"] = cfg.tie_embeddings;
  j["bos_token_id"] = 1;
  j["eos_token_id"] = 2;
  j["torch_dtype"] = dtype;
  return j.dump(2) + "\n";
}

std::string to_hf_name(const ModelConfig& cfg, Family family, const std::string& ours) {
  const Scheme& s = scheme(family);
  if (ours == "embed.weight") return s.embed;
  if (ours == "norm_f.weight") return s.final_norm;
  if (ours == "lm_head.weight") return "lm_head.weight";
  check(starts_with(ours, "layers."), "tensor '", ours, "' is not a samba model tensor");
  auto [i, rest] = split_index(ours.substr(7), ours);
  check(i < cfg.n_layers(), "tensor '", ours, "' names sublayer ", i, " of a model with ", cfg.n_layers());
  const std::string prefix = s.layer_prefix + std::to_string(i / s.sublayers_per_block) + ".";
  const bool mlp = mlp_at(cfg, i);
  check(!mlp || s.mlp != nullptr, "tensor '", ours, "' belongs to an MLP, which ", to_string(family), " models lack");
  if (rest == "norm.weight") return prefix + (mlp ? s.mlp_norm : s.mixer_norm);
  check(starts_with(rest, "mixer."), "tensor '", ours, "' is not a samba model tensor");
  const std::string inner = rest.substr(6);
  if (!mlp) return prefix + s.mixer + inner;
  for (const auto& [a, b] : kMlpNames)
    if (inner == a) return prefix + s.mlp + b;
  fail("tensor '", ours, "' is not a SwiGLU tensor (gate, up, down)");
}

std::string from_hf_name(const ModelConfig& cfg, Family family, const std::string& theirs) {
  const Scheme& s = scheme(family);
  if (theirs == s.embed) return "embed.weight";
  if (theirs == s.final_norm) return "norm_f.weight";
  if (theirs == "lm_head.weight") return "lm_head.weight";
  check(starts_with(theirs, s.layer_prefix), "tensor '", theirs, "' is not part of a ", to_string(family),
        " checkpoint that samba can import");
  auto [block, rest] = split_index(theirs.substr(std::string(s.layer_prefix).size()), theirs);
  const int64_t first = block * s.sublayers_per_block;
  check(first + s.sublayers_per_block <= cfg.n_layers(), "tensor '", theirs, "' names block ", block,
        " but config.json has ", cfg.n_layers() / s.sublayers_per_block);
  auto ours = [](int64_t i, const std::string& what) { return "layers." + std::to_string(i) + "." + what; };
  if (rest == s.mixer_norm) return ours(first, "norm.weight");
  if (starts_with(rest, s.mixer)) return ours(first, "mixer." + rest.substr(std::string(s.mixer).size()));
  if (s.mlp_norm != nullptr && rest == s.mlp_norm) return ours(first + 1, "norm.weight");
  if (s.mlp != nullptr && starts_with(rest, s.mlp)) {
    const std::string inner = rest.substr(std::string(s.mlp).size());
    for (const auto& [a, b] : kMlpNames)
      if (inner == b) return ours(first + 1, std::string("mixer.") + a);
  }
  fail("tensor '", theirs, "' has no counterpart in samba's ", to_string(family), " layout");
}

bool is_hf_directory(const std::string& dir) {
  const fs::path p(dir);
  std::error_code ec;
  if (!fs::is_regular_file(p / "config.json", ec) || fs::exists(p / "model.yaml", ec)) return false;
  try {
    const auto j = nlohmann::json::parse(io::read_file((p / "config.json").string()));
    const std::string type = j.value("model_type", std::string());
    return type == "llama" || type == "mistral" || type == "mamba";
  } catch (const std::exception&) {
    return false;
  }
}

Imported import_directory(const std::string& dir) {
  const fs::path p(dir);
  const std::string origin = (p / "config.json").string();
  check(fs::is_regular_file(origin), "import: '", dir, "' has no config.json; pass a Hugging Face model directory");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(io::read_file(origin));
  } catch (const nlohmann::json::exception& e) {
    fail(origin, " is not valid JSON (", e.what(), ")");
  }
  check(j.is_object(), origin, " must hold a JSON object");
  const std::string type = j.value("model_type", std::string());
  check(type == "llama" || type == "mistral" || type == "mamba", origin, ": model_type '", type,
        "' cannot be imported; samba imports llama, mistral and mamba checkpoints");
  std::string name = p.filename().string();
  if (name.empty()) name = p.parent_path().filename().string();

  Imported out;
  out.config = parse_model_config(model_yaml(j, type, name, origin), origin);
  const Family family = type == "mamba" ? Family::Mamba : (out.config.has(layer_char::kSlidingAttention) ? Family::Mistral : Family::Llama);
  for (auto& [theirs, t] : read_weights(p)) {
    const std::string ours = from_hf_name(out.config, family, theirs);
    // A tied checkpoint may still carry lm_head.weight (a copy of the embedding): drop it.
    if (ours == "lm_head.weight" && out.config.tie_embeddings) continue;
    out.tensors.emplace(ours, t.is_floating_point() ? t.to(torch::kFloat32) : t);
  }
  if (fs::is_regular_file(p / "tokenizer.model")) out.tokenizer_path = (p / "tokenizer.model").string();
  return out;
}

}  // namespace samba::ckpt::hf
