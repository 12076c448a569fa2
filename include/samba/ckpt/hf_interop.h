#pragma once
// Hugging Face layouts of our models, both ways (docs/FORMATS.md, "Hugging Face export"):
//   llama    transformers' LlamaForCausalLM     pattern "A-" x n (full attention + SwiGLU)
//   mistral  transformers' MistralForCausalLM   pattern "*-" x n (sliding_window = attention.window)
//   mamba    transformers' MambaForCausalLM     pattern "M" x n
//   samba    FLA's SambaForCausalLM (fla-org/flash-linear-attention, fla/models/samba):
//            n blocks of (Mamba or attention) + SwiGLU, the attention layers listed in `attn`
// Our layouts already match theirs tensor for tensor (separate q/k/v, rotate-half RoPE,
// Mamba's in_proj = [x | z], depthwise conv (E, 1, K)), so conversion is renaming; the
// config decides whether a model fits a family at all.
#include <torch/torch.h>

#include <map>
#include <string>

#include "samba/core/config.h"

namespace samba::ckpt::hf {

enum class Family { Llama, Mistral, Mamba, FlaSamba };
const char* to_string(Family f);

// The family a model exports to; throws naming what prevents it (a layer kind no class
// has, NoPE, short conv, biases, an MLP width FLA cannot express, ...).
Family family_of(const ModelConfig& cfg);

// config.json of the family (dtype: "float32" | "bfloat16" | "float16").
std::string config_json(const ModelConfig& cfg, Family family, const std::string& dtype);

// Our canonical tensor name -> the family's name and back; throw on names they do not know.
std::string to_hf_name(const ModelConfig& cfg, Family family, const std::string& ours);
std::string from_hf_name(const ModelConfig& cfg, Family family, const std::string& theirs);

// A directory holding an HF checkpoint we can import: config.json whose model_type is
// llama, mistral or mamba (and no model.yaml, which would make it one of our exports).
bool is_hf_directory(const std::string& dir);

struct Imported {
  ModelConfig config;                            // validated; source = <dir>/config.json
  std::map<std::string, torch::Tensor> tensors;  // our canonical names, fp32
  std::string tokenizer_path;                    // <dir>/tokenizer.model when present
};
// Reads config.json and model.safetensors (or the shards of model.safetensors.index.json).
Imported import_directory(const std::string& dir);

}  // namespace samba::ckpt::hf
