#pragma once
// The config side of a layer: its pattern character and name, and the YAML option section it
// reads, checks and writes. Each layer defines these next to its module, in a torch-free
// src/model/layers/<layer>_config.cpp (compiled into samba_base, so config tools need no
// torch), and the one list of kinds is layer_kinds() in src/model/layers/kinds_config.cpp.
// The module side (factory, counts) is the SublayerSpec in the same directory, which takes
// its symbol and name from the kind. Adding a mixer: <layer>_config.cpp + <layer>.cpp, one
// line in each list, its options struct in config.h, and its rows in docs/CONFIG.md.
#include <yaml-cpp/yaml.h>

#include <functional>
#include <string>
#include <vector>

#include "samba/core/config.h"
#include "samba/core/yaml_reader.h"

namespace samba {

// Upper bounds of sizes: every product the model and the analysis form (seq_len x batch x
// width, vocab x d, ...) stays far inside int64; the bounds are far above any real model.
namespace config_limits {
constexpr int64_t kMaxInt = 2147483647;
constexpr int64_t kMaxSeqLen = int64_t{1} << 30;  // a model may describe 1G-token contexts; recipes train <= 2^24
constexpr int64_t kMaxChunk = int64_t{1} << 24;   // Mega-S6 decodes with a chunk-sized KV cache
constexpr double kMaxRopeBase = 1e12;              // finite: inf / nan angles poison every score
}  // namespace config_limits

// Reports an impossible value: (dotted key, what is wrong and what is allowed). Throws.
using KeyError = std::function<void(const std::string& key, const std::string& message)>;

// One YAML section of layer options ("mamba:", "attention:", ...). A section may serve several
// layer kinds (attention: '*', 'A' and RetNet's default head count; mamba: 'M' and Mega's S6).
struct OptionSection {
  const char* key = "";
  std::function<void(YamlMap& section, ModelConfig& cfg)> read;  // the caller finish()es the map
  // Cross-field checks, run once when any layer using the section is in the pattern.
  std::function<void(const ModelConfig& cfg, const KeyError& bad)> validate;
  // Its keys, resolved, as a YAML map body (the caller writes the key and Begin/EndMap).
  std::function<void(YAML::Emitter& e, const ModelConfig& cfg)> write;
};

struct LayerKind {
  char symbol = '?';
  const char* name = "";                      // in `layers:` lists, messages, inspect
  std::vector<const OptionSection*> sections;  // the option sections the layer reads
  // Checks of this kind itself (e.g. an MLP needs mlp_hidden); may be empty.
  std::function<void(const ModelConfig& cfg, const KeyError& bad)> validate;
};

// Every layer kind, and every option section in the order config files are read and written
// (kinds_config.cpp).
const std::vector<LayerKind>& layer_kinds();
const std::vector<const OptionSection*>& option_sections();
// The kind of a pattern character; throws naming the allowed characters.
const LayerKind& layer_kind(char symbol);

// The sections and kinds each layer file defines.
const OptionSection& mamba_options();
const OptionSection& attention_options();
const OptionSection& gla_options();
const OptionSection& retnet_options();
const OptionSection& mega_options();
LayerKind mamba_kind();
LayerKind swa_kind();
LayerKind full_attention_kind();
LayerKind gla_kind();
LayerKind retnet_kind();
LayerKind mega_s6_kind();
LayerKind mlp_kind();
LayerKind mlp2_kind();

// Shared check of the MLP and Mega-S6 kinds (mlp_config.cpp).
void require_mlp_hidden(const ModelConfig& cfg, const KeyError& bad);
// "(0.001) gives a key dim of 0 for d_model 64 and 2 head(s); ... allowed range is key_expand >= ..."
std::string expand_range_message(double expand, int64_t d_model, int64_t heads, int64_t per_head, const char* what);

}  // namespace samba
