#pragma once
// Helpers shared by the torch tests.
#include <torch/torch.h>

#include <string>

#include "samba/core/config.h"

namespace samba::testing {

// A small validated config around `pattern` (e.g. "M-"), sized for fast fp64 tests.
inline ModelConfig tiny_config(const std::string& pattern, int64_t d_model = 32) {
  ModelConfig c;
  c.name = "test";
  c.source = "tiny_config";
  c.vocab_size = 64;
  c.d_model = d_model;
  c.pattern = pattern;
  c.repeat = 1;
  c.layers = pattern;
  c.mlp_hidden = 2 * d_model;
  c.attention.n_heads = 4;
  c.attention.window = 8;
  c.seq_len = 32;
  c.gla.n_heads = 2;
  c.retnet.n_heads = 2;
  c.mega.chunk_size = 16;
  validate(c);
  return c;
}

// max |a - b| / max(|b|, tiny)
inline double rel_error(const torch::Tensor& a, const torch::Tensor& b) {
  auto num = (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
  auto den = b.to(torch::kFloat64).abs().max().item<double>();
  return num / std::max(den, 1e-30);
}

}  // namespace samba::testing
