#pragma once
// Export: a directory that Python tools and `samba eval` / `generate` load directly.
//   model.safetensors  canonical names (embed.weight, layers.<i>.mixer..., lm_head.weight if untied)
//   config.json        HF-style description of the architecture (+ the full samba config)
//   model.yaml         resolved samba model config
//   tokenizer.model    the SentencePiece model the data was tokenized with (when known)
#include <string>

#include "samba/core/config.h"
#include "samba/model/model.h"

namespace samba::ckpt {

struct ExportOptions {
  std::string dtype = "float32";  // or "bfloat16"
  std::string tokenizer_path;     // copied when non-empty
};

// checkpoint_dir: a checkpoint step directory or a run directory (newest complete checkpoint).
void export_model(const std::string& checkpoint_dir, const std::string& out_dir, const ExportOptions& options);

struct LoadedModel {
  ModelConfig config;
  LanguageModel model{nullptr};
  std::string tokenizer_path;  // "" when the directory has none
  std::string source;          // the directory weights came from
};

// Loads a model from an export directory, a checkpoint step directory or a run directory.
LoadedModel load_model(const std::string& dir);

// The HF-style config.json text for a model config.
std::string hf_config_json(const ModelConfig& cfg, const std::string& dtype);

}  // namespace samba::ckpt
