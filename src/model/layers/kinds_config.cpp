// The one list of layer kinds and option sections (layer_config.h). Torch-free.
#include <cmath>
#include <sstream>

#include "samba/core/error.h"
#include "samba/model/layer_config.h"

namespace samba {

const std::vector<LayerKind>& layer_kinds() {
  static const std::vector<LayerKind> kinds{mamba_kind(), swa_kind(), full_attention_kind(), gla_kind(),
                                            retnet_kind(), mlp_kind(),  mega_s6_kind(),       mlp2_kind()};
  return kinds;
}

const std::vector<const OptionSection*>& option_sections() {
  static const std::vector<const OptionSection*> sections{&mamba_options(), &attention_options(), &gla_options(),
                                                          &retnet_options(), &mega_options()};
  return sections;
}

const LayerKind& layer_kind(char symbol) {
  for (const auto& k : layer_kinds())
    if (k.symbol == symbol) return k;
  std::string allowed;
  for (const auto& k : layer_kinds()) allowed += (allowed.empty() ? "'" : ", '") + std::string(1, k.symbol) + "' (" + k.name + ")";
  fail("unknown layer character '", symbol, "'; allowed: ", allowed);
}

std::string expand_range_message(double expand, int64_t d_model, int64_t heads, int64_t per_head, const char* what) {
  std::ostringstream os;
  const double min_expand = static_cast<double>(heads * per_head) / static_cast<double>(d_model);
  os << "(" << expand << ") gives a " << what << " dim of " << std::llround(expand * static_cast<double>(d_model))
     << " for d_model " << d_model << " and " << heads << " head(s); each head needs at least " << per_head << " "
     << what << " channel(s), so the allowed range is " << what << "_expand >= " << min_expand << " (up to 64)";
  return os.str();
}

}  // namespace samba
