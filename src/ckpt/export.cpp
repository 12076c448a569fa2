#include "samba/ckpt/export.h"

#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "samba/ckpt/checkpoint.h"
#include "samba/core/error.h"
#include "samba/core/log.h"
#include "samba/io/files.h"

// The build may pass the project version; exports stay loadable without it.
#ifndef SAMBA_VERSION
#define SAMBA_VERSION "0.1.0"
#endif

namespace samba::ckpt {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

// What an export directory may hold; a directory with anything else is not ours to replace.
const char* const kExportFiles[] = {"model.safetensors", "config.json", "model.yaml", "tokenizer.model"};

torch::ScalarType export_dtype(const std::string& name) {
  if (name == "float32") return torch::kFloat32;
  if (name == "bfloat16") return torch::kBFloat16;
  if (name == "float16") return torch::kFloat16;
  fail("export dtype '", name, "' is not supported; choose float32, bfloat16 or float16");
}

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

bool is_integer_text(const std::string& s) {
  size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

// Plain YAML scalars are typed the way our emitter writes them (true/false, integers,
// decimals); quoted ones stay strings, so a pattern like "-2" is not read as a number.
ojson scalar_to_json(const YAML::Node& n) {
  const std::string& s = n.Scalar();
  if (n.Tag() == "!") return s;
  if (s == "true") return true;
  if (s == "false") return false;
  if (s == "~" || s == "null") return nullptr;
  if (is_integer_text(s)) {
    errno = 0;
    long long v = std::strtoll(s.c_str(), nullptr, 10);
    if (errno == 0) return v;
  }
  char* end = nullptr;
  double d = std::strtod(s.c_str(), &end);
  if (!s.empty() && end == s.c_str() + s.size() && std::isfinite(d)) return d;
  return s;
}

ojson yaml_to_json(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Sequence: {
      ojson a = ojson::array();
      for (const auto& e : n) a.push_back(yaml_to_json(e));
      return a;
    }
    case YAML::NodeType::Map: {
      ojson o = ojson::object();
      for (const auto& kv : n) o[kv.first.as<std::string>()] = yaml_to_json(kv.second);
      return o;
    }
    case YAML::NodeType::Scalar:
      return scalar_to_json(n);
    default:
      return nullptr;
  }
}

// Every entry of an existing output directory is something an export writes.
bool replaceable_export_dir(const fs::path& out, std::string* stranger) {
  for (const auto& entry : fs::directory_iterator(out)) {
    const std::string name = entry.path().filename().string();
    bool ours = false;
    for (const char* f : kExportFiles) ours = ours || name == f;
    if (!ours || !entry.is_regular_file()) {
      *stranger = name;
      return false;
    }
  }
  return true;
}

void check_output_dir(const fs::path& out) {
  if (!fs::exists(out)) return;
  check(fs::is_directory(out), "export: '", out.string(), "' exists and is not a directory; choose another output path");
  std::string stranger;
  check(replaceable_export_dir(out, &stranger), "export: '", out.string(), "' already exists and holds '", stranger,
        "', which is not part of a samba export; choose another output directory or empty this one");
}

void rename_or_fail(const fs::path& from, const fs::path& to) {
  if (::rename(from.c_str(), to.c_str()) != 0)
    fail("export: cannot rename '", from.string(), "' to '", to.string(), "': ", std::strerror(errno),
         "; check permissions on the output directory");
}

// Moves the finished staging directory into place; a previous export there is swapped out
// first and deleted only after the new one is visible.
void publish(const fs::path& staged, const fs::path& out, const std::string& pid) {
  check_output_dir(out);
  const fs::path parent = out.parent_path().empty() ? fs::path(".") : out.parent_path();
  if (fs::exists(out)) {
    const fs::path old = parent / ("." + out.filename().string() + ".export-old-" + pid);
    std::error_code ec;
    io::remove_tree(fs::path(old).string(), ec);
    rename_or_fail(out, old);
    try {
      rename_or_fail(staged, out);
    } catch (...) {
      ::rename(old.c_str(), out.c_str());  // put the previous export back
      throw;
    }
    io::remove_tree(fs::path(old).string(), ec);
  } else {
    rename_or_fail(staged, out);
  }
  io::fsync_dir(parent.string());
}

// Cheap consistency checks before writing anything: the full check (every name and shape)
// happens in load_model / load_state_into, which needs the model built.
void check_model_tensors(const ModelConfig& cfg, const std::map<std::string, torch::Tensor>& tensors,
                         const std::string& origin) {
  auto embed = tensors.find("embed.weight");
  check(embed != tensors.end(), origin, " has no 'embed.weight'; it is not a samba model checkpoint");
  check(embed->second.dim() == 2 && embed->second.size(0) == cfg.vocab_size && embed->second.size(1) == cfg.d_model,
        origin, ": embed.weight has shape ", embed->second.sizes(), " but model.yaml says vocab_size ", cfg.vocab_size,
        " and d_model ", cfg.d_model, "; the checkpoint's files do not belong together");
  const bool has_head = tensors.count("lm_head.weight") != 0;
  check(has_head != cfg.tie_embeddings, origin, (has_head ? " has" : " has no"), " lm_head.weight but model.yaml says tie_embeddings: ",
        cfg.tie_embeddings ? "true" : "false", "; the checkpoint's files do not belong together");
}

std::string tokenizer_from_trainer_state(const fs::path& step_dir) {
  const fs::path trainer = step_dir / "trainer.json";
  if (!is_file(trainer)) return "";
  nlohmann::json state;
  try {
    state = nlohmann::json::parse(io::read_file(trainer.string()));
  } catch (const nlohmann::json::exception& e) {
    fail("checkpoint ", step_dir.string(), ": trainer.json is not valid JSON (", e.what(), ")");
  }
  if (!state.is_object() || !state.contains("tokenizer_path") || !state["tokenizer_path"].is_string()) return "";
  const std::string path = state["tokenizer_path"].get<std::string>();
  if (path.empty()) return "";
  if (!is_file(path)) {
    spdlog::warn("checkpoint {} names tokenizer {}, which does not exist; pass the tokenizer path explicitly",
                 step_dir.string(), path);
    return "";
  }
  return path;
}

}  // namespace

std::string hf_config_json(const ModelConfig& cfg, const std::string& dtype) {
  export_dtype(dtype);
  const bool attention = cfg.has(layer_char::kSlidingAttention) || cfg.has(layer_char::kFullAttention);
  const bool heads = cfg.attention.n_heads > 0;
  auto int_or_null = [](bool present, int64_t v) { return present ? ojson(v) : ojson(nullptr); };

  ojson j;
  j["architectures"] = ojson::array({"SambaForCausalLM"});
  j["model_type"] = "samba";
  j["vocab_size"] = cfg.vocab_size;
  j["hidden_size"] = cfg.d_model;
  j["intermediate_size"] = int_or_null(cfg.mlp_hidden > 0, cfg.mlp_hidden);
  j["num_hidden_layers"] = cfg.n_layers();
  j["layer_pattern"] = cfg.layers;
  ojson types = ojson::array();
  for (char c : cfg.layers) types.push_back(layer_name(c));
  j["layer_types"] = types;
  j["num_attention_heads"] = int_or_null(heads, cfg.attention.n_heads);
  j["num_key_value_heads"] = int_or_null(heads, cfg.attn_kv_heads());
  j["head_dim"] = int_or_null(heads, cfg.attn_head_dim());
  j["sliding_window"] = int_or_null(cfg.has(layer_char::kSlidingAttention), cfg.attention.window);
  j["rope_theta"] = attention && cfg.attention.rope ? ojson(cfg.attention.rope_base) : ojson(nullptr);
  j["max_position_embeddings"] = cfg.seq_len;
  j["rms_norm_eps"] = cfg.norm_eps;
  j["tie_word_embeddings"] = cfg.tie_embeddings;
  j["mamba"] = {{"d_state", cfg.mamba.d_state},
                {"d_conv", cfg.mamba.d_conv},
                {"expand", cfg.mamba.expand},
                {"dt_rank", cfg.mamba_dt_rank()}};
  j["torch_dtype"] = dtype;
  j["samba_version"] = SAMBA_VERSION;
  j["samba_config"] = yaml_to_json(YAML::Load(to_yaml(cfg)));
  return j.dump(2) + "\n";
}

void export_model(const std::string& checkpoint_dir, const std::string& out_dir, const ExportOptions& options) {
  const torch::ScalarType dtype = export_dtype(options.dtype);
  check(!out_dir.empty(), "export: no output directory given; pass one (e.g. --out exports/samba-421m)");
  fs::path out = fs::path(out_dir).lexically_normal();
  if (!out.has_filename()) out = out.parent_path();  // "dir/" names "dir"
  check_output_dir(out);

  const std::string step_dir = resolve_checkpoint_dir(checkpoint_dir);
  verify_checkpoint(step_dir);
  const fs::path step(step_dir);
  const ModelConfig cfg = load_model_config((step / "model.yaml").string());
  const std::string weights = (step / "model.safetensors").string();
  auto tensors = load_tensors(weights);
  check_model_tensors(cfg, tensors, weights);

  std::string tokenizer = options.tokenizer_path;
  if (!tokenizer.empty())
    check(is_file(tokenizer), "export: tokenizer '", tokenizer,
          "' does not exist; pass the tokenizer.model the training data was prepared with");
  else
    tokenizer = tokenizer_from_trainer_state(step);

  const fs::path parent = out.parent_path().empty() ? fs::path(".") : out.parent_path();
  std::error_code ec;
  fs::create_directories(parent, ec);
  check(!ec, "export: cannot create '", parent.string(), "': ", ec.message(), "; check the path and permissions");
  const std::string pid = std::to_string(::getpid());
  const fs::path staged = parent / ("." + out.filename().string() + ".export-tmp-" + pid);
  io::remove_tree(fs::path(staged).string(), ec);
  check(fs::create_directory(staged, ec) && !ec, "export: cannot create '", staged.string(), "': ", ec.message(),
        "; check free space and permissions");
  try {
    NamedTensors named;
    for (auto& [name, t] : tensors) named.emplace_back(name, t.is_floating_point() ? t.to(dtype) : t);
    tensors.clear();
    save_tensors((staged / "model.safetensors").string(), named,
                 {{"format", "pt"}, {"samba_version", SAMBA_VERSION}});
    named.clear();
    io::write_file_atomic((staged / "config.json").string(), hf_config_json(cfg, options.dtype));
    io::write_file_atomic((staged / "model.yaml").string(), to_yaml(cfg));
    if (!tokenizer.empty()) io::write_file_atomic((staged / "tokenizer.model").string(), io::read_file(tokenizer));
    io::fsync_dir(staged.string());
    publish(staged, out, pid);
  } catch (...) {
    io::remove_tree(fs::path(staged).string(), ec);
    throw;
  }
  spdlog::info("exported {} ({}) to {}", step_dir, options.dtype, out.string());
}

LoadedModel load_model(const std::string& dir) {
  const fs::path p(dir);
  check(fs::is_directory(p), "load_model: '", dir, "' is not a directory; pass an export directory, a checkpoint ",
        "directory (.../step_00000120) or a run directory");
  const bool export_dir = is_file(p / "model.yaml") && is_file(p / "model.safetensors") &&
                          !fs::exists(p / "manifest.json") && !fs::exists(p / "COMPLETE");
  LoadedModel out;
  out.source = export_dir ? dir : resolve_checkpoint_dir(dir);
  const fs::path src(out.source);
  if (!export_dir) verify_checkpoint(out.source);

  out.config = load_model_config((src / "model.yaml").string());
  out.model = LanguageModel(out.config);
  const std::string weights = (src / "model.safetensors").string();
  load_state_into(*out.model, load_tensors(weights), weights);

  if (is_file(src / "tokenizer.model"))
    out.tokenizer_path = (src / "tokenizer.model").string();
  else if (!export_dir)
    out.tokenizer_path = tokenizer_from_trainer_state(src);
  return out;
}

}  // namespace samba::ckpt
