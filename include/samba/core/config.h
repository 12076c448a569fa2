#pragma once
// Typed model configuration. Filled from YAML by load_model_config (strict: unknown keys,
// wrong types and impossible values are errors naming file, line, key and what is allowed).
// No torch here: the config layer is shared by the CLI, data tools and tests.
#include <cstdint>
#include <string>
#include <vector>

namespace samba {

enum class InitScheme { Mamba, TinyLlama };
const char* to_string(InitScheme s);

// Pattern characters: one per pre-norm residual sublayer (Megatron hybrid style).
namespace layer_char {
constexpr char kMamba = 'M';
constexpr char kSlidingAttention = '*';
constexpr char kFullAttention = 'A';
constexpr char kGLA = 'G';
constexpr char kRetNet = 'R';
constexpr char kMLP = '-';
constexpr char kMegaS6 = 'S';
constexpr char kMLP2 = '2';
}  // namespace layer_char
// All valid pattern characters, for error messages and validation.
const std::string& valid_layer_chars();
// Human-readable name of a pattern character ("mamba", "swa", ...); throws on unknown.
const char* layer_name(char c);

struct MambaConfig {
  int64_t d_state = 16;
  int64_t d_conv = 4;
  int64_t expand = 2;
  int64_t dt_rank = 0;  // 0 = auto: ceil(d_model / 16)
  double dt_min = 1e-3;
  double dt_max = 0.1;
  double dt_init_floor = 1e-4;
  bool conv_bias = true;
  bool proj_bias = false;
};

struct AttentionConfig {
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;  // 0 = n_heads (MHA); fewer = GQA; 1 = MQA
  int64_t head_dim = 0;    // 0 = d_model / n_heads
  int64_t window = 2048;   // sliding window W of '*' layers: query i sees keys i-W+1..i
  bool rope = true;        // false = NoPE
  double rope_base = 10000.0;
  bool short_conv = false;  // depthwise causal conv (kernel short_conv_kernel) + SiLU on q, k, v
  int64_t short_conv_kernel = 4;
  bool qkv_bias = false;
};

struct GLAConfig {
  int64_t n_heads = 0;      // 0 = max(1, d_model / 384)
  double key_expand = 0.5;  // key dim = key_expand * d_model
  double value_expand = 1.0;
  int64_t gate_low_rank = 16;
  double gate_normalizer = 16.0;  // log-gate = logsigmoid(.) / gate_normalizer
  int64_t chunk_size = 64;
  bool short_conv = false;
  int64_t short_conv_kernel = 4;
};

struct RetNetConfig {
  int64_t n_heads = 0;      // 0 = max(1, attention.n_heads / 2)
  double key_expand = 1.0;  // key dim = key_expand * d_model
  double value_expand = 2.0;
  int64_t chunk_size = 64;
};

struct MegaConfig {
  int64_t z_dim = 0;          // shared q/k dim (even: rotary bias); 0 = auto: min(128, d_model)
  int64_t hidden_expand = 1;  // value / hidden dim = hidden_expand * d_model (reference: 1)
  int64_t chunk_size = 2048;  // attention is computed within chunks of this length
  int64_t resolved_z_dim(int64_t d_model) const { return z_dim > 0 ? z_dim : (d_model < 128 ? d_model : 128); }
};

struct ModelConfig {
  std::string name;
  std::string source;  // file it was loaded from (for messages)
  int64_t vocab_size = 32000;
  int64_t d_model = 0;
  std::string pattern;  // unit pattern as written (one char per sublayer)
  int64_t repeat = 1;   // pattern repeated this many times
  std::string layers;   // resolved: pattern x repeat, one char per sublayer
  int64_t mlp_hidden = 0;
  int64_t mlp2_hidden = 0;  // hidden of the '2' sublayer; 0 = 2 * d_model
  double norm_eps = 1e-5;
  bool tie_embeddings = true;
  InitScheme init = InitScheme::Mamba;
  double init_std = 0.02;  // embedding std for mamba init
  int64_t seq_len = 4096;  // training length: FLOPs, memory estimate, eval multiples
  int64_t n_blocks = 0;    // 0 = auto: number of MLP sublayers, or of all sublayers if none
  double paper_params = 0;  // the paper's parameter count, if known (for inspect)
  // The matching config of the official code (microsoft/Samba lit_gpt/config.py) and its exact
  // parameter count; inspect prints it beside ours and the zoo test checks both. "" / 0: none.
  std::string official_name;
  int64_t official_params = 0;

  MambaConfig mamba;
  AttentionConfig attention;
  GLAConfig gla;
  RetNetConfig retnet;
  MegaConfig mega;

  int64_t n_layers() const { return static_cast<int64_t>(layers.size()); }
  int64_t blocks() const;  // n_blocks resolved
  int64_t mamba_dt_rank() const;
  int64_t attn_head_dim() const;
  int64_t attn_kv_heads() const;
  int64_t gla_heads() const;
  int64_t retnet_heads() const;
  int64_t mlp2_hidden_size() const;
  bool has(char c) const { return layers.find(c) != std::string::npos; }
};

// Loads a model config (with `include:` of base files) and validates it. `overrides` are
// "key=value" strings (core/overrides.h) applied to the file's top level before validation;
// `override_prefix` is how their keys were spelled on the command line ("model." from a recipe).
ModelConfig load_model_config(const std::string& path, const std::vector<std::string>& overrides = {},
                              const std::string& override_prefix = "");
// Parses YAML text (used by tests and by configs embedded in other files); `origin` names
// the text in error messages.
ModelConfig parse_model_config(const std::string& yaml_text, const std::string& origin);
// Throws samba::Error naming what is impossible (heads not dividing d_model, ...).
void validate(const ModelConfig& cfg);
// Resolved config written back as YAML (written next to checkpoints; re-loadable).
std::string to_yaml(const ModelConfig& cfg);

}  // namespace samba
