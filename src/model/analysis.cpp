#include "samba/model/analysis.h"

#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include "samba/core/error.h"
#include "samba/model/sublayer.h"

namespace samba {
namespace {

// Parameter totals are exact integers; a config so large that they would wrap is an error,
// not a negative count.
int64_t checked_add(int64_t a, int64_t b, const ModelConfig& cfg) {
  int64_t out = 0;
  check(!__builtin_add_overflow(a, b, &out), cfg.source, ": model '", cfg.name,
        "' has more parameters than a 64-bit count holds; reduce d_model, repeat or the layer sizes");
  return out;
}

int64_t checked_mul(int64_t a, int64_t b, const ModelConfig& cfg) {
  int64_t out = 0;
  check(!__builtin_mul_overflow(a, b, &out), cfg.source, ": model '", cfg.name,
        "' has more parameters than a 64-bit count holds; reduce vocab_size or d_model");
  return out;
}

}  // namespace

ModelSummary summarize(const ModelConfig& cfg, int64_t micro_batch, int activation_bytes) {
  ModelSummary s;
  const double d = static_cast<double>(cfg.d_model);
  double saved_per_token = 0;
  for (int64_t i = 0; i < cfg.n_layers(); ++i) {
    const SublayerSpec& spec = sublayer_spec(cfg.layers[i]);
    LayerSummary l;
    l.index = i;
    l.symbol = spec.symbol;
    l.name = spec.name;
    l.params = checked_add(spec.num_params(cfg), cfg.d_model, cfg);  // + pre-norm scale
    l.forward_flops_per_token = spec.forward_flops_per_token(cfg, cfg.seq_len);
    // Each sublayer also saves its normalised input and the residual for backward.
    saved_per_token += spec.saved_activations_per_token(cfg) + 2.0 * d;
    s.total_params = checked_add(s.total_params, l.params, cfg);
    s.forward_flops_per_token += l.forward_flops_per_token;
    s.layers.push_back(l);
  }
  s.embedding_params = checked_mul(checked_mul(cfg.vocab_size, cfg.d_model, cfg), cfg.tie_embeddings ? 1 : 2, cfg);
  s.total_params = checked_add(s.total_params, checked_add(s.embedding_params, cfg.d_model, cfg), cfg);  // + final norm
  s.non_embedding_params = s.total_params - s.embedding_params;
  s.forward_flops_per_token += 2.0 * d * static_cast<double>(cfg.vocab_size);
  s.training_flops_per_token = 3.0 * s.forward_flops_per_token;

  const double params = static_cast<double>(s.total_params);
  const double tokens = static_cast<double>(micro_batch) * static_cast<double>(cfg.seq_len);  // no int64 wrap
  s.memory.weights = 4.0 * params;
  s.memory.gradients = 4.0 * params;
  s.memory.optimizer = 8.0 * params;
  s.memory.activations = saved_per_token * tokens * activation_bytes;
  s.memory.logits = 2.0 * 4.0 * static_cast<double>(cfg.vocab_size) * tokens;
  return s;
}

std::string human_count(double n) {
  char buf[64];
  if (n >= 1e9) std::snprintf(buf, sizeof buf, "%.3gB", n / 1e9);
  else if (n >= 1e6) std::snprintf(buf, sizeof buf, "%.1fM", n / 1e6);
  else if (n >= 1e3) std::snprintf(buf, sizeof buf, "%.1fK", n / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f", n);
  return buf;
}

std::string human_bytes(double n) {
  char buf[64];
  if (n >= 1024.0 * 1024 * 1024) std::snprintf(buf, sizeof buf, "%.2f GiB", n / (1024.0 * 1024 * 1024));
  else std::snprintf(buf, sizeof buf, "%.1f MiB", n / (1024.0 * 1024));
  return buf;
}

std::string format_summary(const ModelConfig& cfg, const ModelSummary& s, int64_t micro_batch, int activation_bytes) {
  std::ostringstream o;
  char line[256];
  o << "model " << cfg.name << "  (" << cfg.source << ")\n";
  o << "  d_model " << cfg.d_model << ", vocab " << cfg.vocab_size << ", " << cfg.n_layers() << " sublayers in "
    << cfg.blocks() << " blocks, init " << to_string(cfg.init) << ", embeddings "
    << (cfg.tie_embeddings ? "tied" : "untied") << ", seq_len " << cfg.seq_len << "\n";
  o << "  pattern \"" << cfg.pattern << "\" x " << cfg.repeat << "\n\n";

  o << "  idx  chr  layer      params        fwd GFLOP/token\n";
  std::map<char, int64_t> params_by_kind;
  for (const auto& l : s.layers) {
    params_by_kind[l.symbol] += l.params;
    std::snprintf(line, sizeof line, "  %3lld   %c   %-9s  %12lld  %10.4f\n", static_cast<long long>(l.index), l.symbol,
                  l.name.c_str(), static_cast<long long>(l.params), l.forward_flops_per_token / 1e9);
    o << line;
  }
  o << "\n  parameters by layer kind:\n";
  for (const auto& [c, p] : params_by_kind) {
    std::snprintf(line, sizeof line, "    %c %-9s %s\n", c, layer_name(c), human_count(static_cast<double>(p)).c_str());
    o << line;
  }
  std::snprintf(line, sizeof line, "\n  total parameters       %lld (%s)", static_cast<long long>(s.total_params),
                human_count(static_cast<double>(s.total_params)).c_str());
  o << line;
  if (cfg.paper_params > 0) {
    const double dev = 100.0 * (static_cast<double>(s.total_params) - cfg.paper_params) / cfg.paper_params;
    std::snprintf(line, sizeof line, "   paper: %s (%+.2f%%)", human_count(cfg.paper_params).c_str(), dev);
    o << line;
  }
  o << "\n";
  if (cfg.official_params > 0) {
    const long long diff = static_cast<long long>(s.total_params) - static_cast<long long>(cfg.official_params);
    std::snprintf(line, sizeof line, "  official parameters    %lld (microsoft/Samba %s)%s", static_cast<long long>(cfg.official_params),
                  cfg.official_name.c_str(), diff == 0 ? ", equal to ours\n" : "");
    o << line;
    if (diff != 0) {
      std::snprintf(line, sizeof line, ", ours differ by %+lld\n", diff);
      o << line;
    }
  }
  std::snprintf(line, sizeof line, "  embedding parameters   %lld (%s)\n  non-embedding          %lld (%s)\n",
                static_cast<long long>(s.embedding_params), human_count(static_cast<double>(s.embedding_params)).c_str(),
                static_cast<long long>(s.non_embedding_params),
                human_count(static_cast<double>(s.non_embedding_params)).c_str());
  o << line;
  std::snprintf(line, sizeof line, "  FLOPs per token at seq_len %lld: forward %.3f GFLOP, training (fwd+bwd) %.3f GFLOP\n",
                static_cast<long long>(cfg.seq_len), s.forward_flops_per_token / 1e9, s.training_flops_per_token / 1e9);
  o << line;
  o << "  training memory estimate (micro-batch " << micro_batch << " x " << cfg.seq_len << ", activations "
    << (activation_bytes == 2 ? "bf16" : "fp32") << "):\n";
  o << "    weights fp32   " << human_bytes(s.memory.weights) << "\n";
  o << "    gradients      " << human_bytes(s.memory.gradients) << "\n";
  o << "    AdamW moments  " << human_bytes(s.memory.optimizer) << "\n";
  o << "    activations    " << human_bytes(s.memory.activations) << "\n";
  o << "    logits         " << human_bytes(s.memory.logits) << "\n";
  o << "    total          " << human_bytes(s.memory.total()) << "\n";
  return o.str();
}

}  // namespace samba
