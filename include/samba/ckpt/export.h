#pragma once
// Export: a directory that Python tools and `samba eval` / `generate` load directly.
//   format samba (ours, any pattern):
//     model.safetensors  canonical names (embed.weight, layers.<i>.mixer..., lm_head.weight if untied)
//     config.json        description of the architecture (+ the full samba config)
//     model.yaml         resolved samba model config
//   format hf (hf_interop.h: transformers' Llama / Mistral / Mamba, FLA's Samba):
//     model.safetensors + config.json in that class's names and keys
//   both: tokenizer.model (when known), logits.safetensors (with --logits-for), and CRC32C
//   checksums of every tensor and sibling file in model.safetensors' metadata, verified on load.
#include <cstdint>
#include <string>
#include <vector>

#include "samba/core/config.h"
#include "samba/model/model.h"

namespace samba::ckpt {

struct ExportOptions {
  std::string dtype = "float32";  // "float32", "bfloat16" or "float16"
  std::string tokenizer_path;     // copied when non-empty
  std::string format = "samba";   // "samba" or "hf"
  std::vector<int64_t> logits_tokens;  // non-empty: also write logits.safetensors for these tokens
};

// checkpoint_dir: a checkpoint step directory or a run directory (newest complete checkpoint).
void export_model(const std::string& checkpoint_dir, const std::string& out_dir, const ExportOptions& options);
// A freshly initialised model of `model_yaml` (torch seed `seed`), e.g. to test other loaders.
void export_initialised(const std::string& model_yaml, uint64_t seed, const std::string& out_dir,
                        const ExportOptions& options);
// A Hugging Face Llama / Mistral / Mamba directory (hf_interop.h) -> an export (format as asked).
void import_hf(const std::string& hf_dir, const std::string& out_dir, const ExportOptions& options);
// Checks the CRC32C table of <dir>/model.safetensors (every tensor) and the sibling files it
// lists; throws naming the damaged tensor or file. Files without our table are loaded with a warning.
void verify_export(const std::string& dir);

struct LoadedModel {
  ModelConfig config;
  LanguageModel model{nullptr};
  std::string tokenizer_path;  // "" when the directory has none
  std::string source;          // the directory weights came from
};

// Loads a model from an export directory (checksums verified), a checkpoint step directory,
// a run directory, or a Hugging Face Llama / Mistral / Mamba directory.
LoadedModel load_model(const std::string& dir);

// The HF-style config.json text for a model config.
std::string hf_config_json(const ModelConfig& cfg, const std::string& dtype);

}  // namespace samba::ckpt
