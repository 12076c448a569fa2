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
#include "samba/ckpt/hf_interop.h"
#include "samba/core/error.h"
#include "samba/core/log.h"
#include "samba/io/crc32c.h"
#include "samba/io/files.h"
#include "samba/io/safetensors.h"

// The build may pass the project version; exports stay loadable without it.
#ifndef SAMBA_VERSION
#define SAMBA_VERSION "0.1.0"
#endif

namespace samba::ckpt {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

// What an export directory may hold; a directory with anything else is not ours to replace.
const char* const kExportFiles[] = {"model.safetensors", "config.json", "model.yaml", "tokenizer.model",
                                    "logits.safetensors"};
// Checksums travel inside model.safetensors' __metadata__ (docs/FORMATS.md): one CRC32C per
// tensor, and one per sibling file, so a damaged export is named instead of evaluated.
const char* const kTensorCrcKey = "samba_tensor_crc32c";
const char* const kFileCrcKey = "samba_file_crc32c";

torch::ScalarType export_dtype(const std::string& name) {
  if (name == "float32") return torch::kFloat32;
  if (name == "bfloat16") return torch::kBFloat16;
  if (name == "float16") return torch::kFloat16;
  fail("export dtype '", name, "' is not supported; choose float32, bfloat16 or float16");
}

uint32_t crc_of(const torch::Tensor& t) {
  return io::crc32c(t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size());
}

uint32_t crc_of(const std::string& bytes) { return io::crc32c(bytes.data(), bytes.size()); }

// Parses one of our checksum maps ({"name": crc}) from the metadata; empty when absent.
std::map<std::string, uint32_t> crc_map(const io::SafetensorsFile& f, const char* key) {
  std::map<std::string, uint32_t> out;
  auto it = f.metadata().find(key);
  if (it == f.metadata().end()) return out;
  try {
    const auto table = nlohmann::json::parse(it->second);
    for (auto e = table.begin(); e != table.end(); ++e) out[e.key()] = e.value().get<uint32_t>();
  } catch (const nlohmann::json::exception& e) {
    fail(f.path(), ": the checksum table '", key, "' in its metadata is damaged (", e.what(),
         "); the file is corrupt, export the model again");
  }
  return out;
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
  // Not FLA's "samba" type: this layout is ours (any pattern); --format hf writes the classes
  // Python has (hf_interop.h), so no loader mistakes this one for them.
  j["architectures"] = ojson::array({"SambaHybridForCausalLM"});
  j["model_type"] = "samba_hybrid";
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

namespace {

// Logits of the model the export holds (its tensors after the dtype round trip) on `tokens`,
// for checking other loaders against us (scripts/gpu/check_hf_exports.sh).
NamedTensors reference_logits(const ModelConfig& cfg, const std::map<std::string, torch::Tensor>& exported,
                              const std::vector<int64_t>& tokens) {
  for (int64_t t : tokens)
    check(t >= 0 && t < cfg.vocab_size, "export: --logits-for token ", t, " is outside the vocabulary [0, ",
          cfg.vocab_size, ")");
  std::map<std::string, torch::Tensor> fp32;
  for (const auto& [name, t] : exported) fp32.emplace(name, t.is_floating_point() ? t.to(torch::kFloat32) : t);
  LanguageModel model(cfg);
  load_state_into(*model, fp32, "export");
  model->eval();
  torch::NoGradGuard no_grad;
  auto ids = torch::tensor(tokens).to(torch::kInt64).unsqueeze(0);
  return {{"input_ids", ids}, {"logits", model->forward(ids).contiguous()}};
}

// Writes an export of `tensors` (our canonical names) to `out`: staged, then published.
void write_export(const ModelConfig& cfg, std::map<std::string, torch::Tensor> tensors, const std::string& tokenizer,
                  const fs::path& out, const ExportOptions& options, const std::string& what) {
  const torch::ScalarType dtype = export_dtype(options.dtype);
  check(options.format == "samba" || options.format == "hf", "export format '", options.format,
        "' is not supported; choose samba or hf");
  const bool hf_format = options.format == "hf";
  const hf::Family family = hf_format ? hf::family_of(cfg) : hf::Family::Llama;
  check_model_tensors(cfg, tensors, what);

  std::map<std::string, torch::Tensor> exported;
  for (auto& [name, t] : tensors)
    exported.emplace(name, (t.is_floating_point() ? t.to(dtype) : t).to(torch::kCPU).contiguous());
  tensors.clear();

  NamedTensors named;
  ojson tensor_crcs = ojson::object();
  for (const auto& [name, t] : exported) {
    const std::string out_name = hf_format ? hf::to_hf_name(cfg, family, name) : name;
    tensor_crcs[out_name] = crc_of(t);
    named.emplace_back(out_name, t);
  }
  const std::string config_text = hf_format ? hf::config_json(cfg, family, options.dtype) : hf_config_json(cfg, options.dtype);
  const std::string yaml_text = to_yaml(cfg);
  const std::string tokenizer_bytes = tokenizer.empty() ? std::string() : io::read_file(tokenizer);
  ojson file_crcs = ojson::object();
  file_crcs["config.json"] = crc_of(config_text);
  if (!hf_format) file_crcs["model.yaml"] = crc_of(yaml_text);
  if (!tokenizer.empty()) file_crcs["tokenizer.model"] = crc_of(tokenizer_bytes);
  NamedTensors logits;
  if (!options.logits_tokens.empty()) logits = reference_logits(cfg, exported, options.logits_tokens);

  const fs::path parent = out.parent_path().empty() ? fs::path(".") : out.parent_path();
  std::error_code ec;
  fs::create_directories(parent, ec);
  check(!ec && fs::is_directory(parent), "export: cannot create '", parent.string(), "': ",
        ec ? ec.message() : std::string("a file is in the way"), "; check the path and permissions");
  const std::string pid = std::to_string(::getpid());
  const fs::path staged = parent / ("." + out.filename().string() + ".export-tmp-" + pid);
  io::remove_tree(fs::path(staged).string(), ec);
  const bool made = fs::create_directory(staged, ec);
  check(made && !ec, "export: cannot create '", staged.string(), "': ", ec ? ec.message() : std::string("it already exists"),
        "; check free space and permissions");
  try {
    save_tensors((staged / "model.safetensors").string(), named,
                 {{"format", "pt"},
                  {"samba_version", SAMBA_VERSION},
                  {kTensorCrcKey, tensor_crcs.dump()},
                  {kFileCrcKey, file_crcs.dump()}});
    named.clear();
    io::write_file_atomic((staged / "config.json").string(), config_text);
    if (!hf_format) io::write_file_atomic((staged / "model.yaml").string(), yaml_text);
    if (!tokenizer.empty()) io::write_file_atomic((staged / "tokenizer.model").string(), tokenizer_bytes);
    if (!logits.empty()) save_tensors((staged / "logits.safetensors").string(), logits, {{"format", "pt"}});
    io::fsync_dir(staged.string());
    publish(staged, out, pid);
  } catch (...) {
    io::remove_tree(fs::path(staged).string(), ec);
    throw;
  }
  spdlog::info("exported {} ({}, {}{}) to {}", what, options.dtype, options.format,
               hf_format ? std::string(" ") + hf::to_string(family) : std::string(), out.string());
}

fs::path output_path(const std::string& out_dir) {
  check(!out_dir.empty(), "export: no output directory given; pass one (e.g. --out exports/samba-421m)");
  fs::path out = fs::path(out_dir).lexically_normal();
  if (!out.has_filename()) out = out.parent_path();  // "dir/" names "dir"
  check_output_dir(out);
  return out;
}

}  // namespace

void export_model(const std::string& checkpoint_dir, const std::string& out_dir, const ExportOptions& options) {
  export_dtype(options.dtype);
  const fs::path out = output_path(out_dir);
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
  write_export(cfg, std::move(tensors), tokenizer, out, options, step_dir);
}

void export_initialised(const std::string& model_yaml, uint64_t seed, const std::string& out_dir,
                        const ExportOptions& options) {
  export_dtype(options.dtype);
  const fs::path out = output_path(out_dir);
  const ModelConfig cfg = load_model_config(model_yaml);
  if (!options.tokenizer_path.empty())
    check(is_file(options.tokenizer_path), "export: tokenizer '", options.tokenizer_path, "' does not exist");
  torch::manual_seed(seed);
  LanguageModel model(cfg);
  std::map<std::string, torch::Tensor> tensors;
  for (auto& [name, t] : module_state(*model)) tensors.emplace(name, t.detach());
  write_export(cfg, std::move(tensors), options.tokenizer_path, out, options,
               model_yaml + " (initialised, seed " + std::to_string(seed) + ")");
}

void import_hf(const std::string& hf_dir, const std::string& out_dir, const ExportOptions& options) {
  export_dtype(options.dtype);
  const fs::path out = output_path(out_dir);
  verify_export(hf_dir);
  hf::Imported imported = hf::import_directory(hf_dir);
  LanguageModel model(imported.config);  // checks every name and shape before anything is written
  load_state_into(*model, imported.tensors, hf_dir);
  std::string tokenizer = options.tokenizer_path.empty() ? imported.tokenizer_path : options.tokenizer_path;
  write_export(imported.config, std::move(imported.tensors), tokenizer, out, options, hf_dir);
}

void verify_export(const std::string& dir) {
  const fs::path p(dir);
  const std::string weights = (p / "model.safetensors").string();
  if (!is_file(weights)) return;  // sharded HF checkpoints carry no checksums of ours
  io::SafetensorsFile f(weights);  // validates structure: a truncated file fails here
  const auto tensor_crcs = crc_map(f, kTensorCrcKey);
  if (tensor_crcs.empty()) {
    spdlog::warn("{} carries no checksums (written by another tool or an older samba); it is loaded unverified", weights);
    return;
  }
  std::vector<std::string> damaged;
  for (const auto& name : f.names()) {
    auto it = tensor_crcs.find(name);
    const uint32_t crc = io::crc32c(f.data(name), f.info(name).nbytes);
    if (it == tensor_crcs.end() || it->second != crc) damaged.push_back(name);
  }
  for (const auto& [name, crc] : tensor_crcs)
    if (!f.contains(name)) damaged.push_back(name + " (missing)");
  if (!damaged.empty()) {
    std::string list = damaged[0];
    for (size_t i = 1; i < damaged.size() && i < 4; ++i) list += ", " + damaged[i];
    if (damaged.size() > 4) list += ", ... (" + std::to_string(damaged.size()) + " in all)";
    fail(weights, " is damaged: tensor(s) ", list, " do not match the CRC32C recorded at export; ",
         "export the model again from its checkpoint");
  }
  for (const auto& [file, crc] : crc_map(f, kFileCrcKey)) {
    const fs::path sibling = p / file;
    check(is_file(sibling), dir, ": ", file, " is missing but the export recorded it; export the model again");
    const uint32_t got = crc_of(io::read_file(sibling.string()));
    check(got == crc, sibling.string(), " is damaged: its CRC32C does not match the one recorded at export; ",
          "export the model again (or copy the file from the training run)");
  }
}

LoadedModel load_model(const std::string& dir) {
  const fs::path p(dir);
  check(fs::is_directory(p), "load_model: '", dir, "' is not a directory; pass an export directory, a checkpoint ",
        "directory (.../step_00000120) or a run directory");
  const bool export_dir = is_file(p / "model.yaml") && is_file(p / "model.safetensors") &&
                          !fs::exists(p / "manifest.json") && !fs::exists(p / "COMPLETE");
  LoadedModel out;
  if (!export_dir && hf::is_hf_directory(dir)) {  // a Hugging Face Llama / Mistral / Mamba checkpoint
    verify_export(dir);
    hf::Imported imported = hf::import_directory(dir);
    out.source = dir;
    out.config = imported.config;
    out.model = LanguageModel(out.config);
    load_state_into(*out.model, imported.tensors, dir);
    out.tokenizer_path = imported.tokenizer_path;
    return out;
  }
  out.source = export_dir ? dir : resolve_checkpoint_dir(dir);
  const fs::path src(out.source);
  if (export_dir) verify_export(dir);
  else verify_checkpoint(out.source);

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
