#include "samba/model/init.h"

#include <cmath>

namespace samba {

InitSpec InitSpec::from_config(const ModelConfig& cfg) {
  InitSpec s;
  s.scheme = cfg.init;
  s.d_model = cfg.d_model;
  s.n_blocks = cfg.blocks();
  s.n_sublayers = cfg.n_layers();
  s.embed_std = cfg.init_std;
  return s;
}

double InitSpec::tinyllama_std() const { return std::sqrt(2.0 / (5.0 * static_cast<double>(d_model))); }

double InitSpec::tinyllama_residual_std() const {
  return 1.0 / (std::sqrt(static_cast<double>(d_model)) * static_cast<double>(n_blocks));
}

double InitSpec::mamba_residual_divisor() const { return std::sqrt(static_cast<double>(n_sublayers)); }

void reset_linear_default(torch::nn::Linear& linear) {
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(linear->weight, std::sqrt(5.0));
  if (linear->bias.defined()) linear->bias.zero_();
}

void init_input_projection(torch::nn::Linear& linear, const InitSpec& spec) {
  torch::NoGradGuard no_grad;
  if (spec.scheme == InitScheme::TinyLlama) {
    linear->weight.normal_(0.0, spec.tinyllama_std());
    if (linear->bias.defined()) linear->bias.zero_();
  } else {
    reset_linear_default(linear);
  }
}

void init_output_projection(torch::nn::Linear& linear, const InitSpec& spec) {
  torch::NoGradGuard no_grad;
  if (spec.scheme == InitScheme::TinyLlama) {
    linear->weight.normal_(0.0, spec.tinyllama_residual_std());
    if (linear->bias.defined()) linear->bias.zero_();
  } else {
    reset_linear_default(linear);
    linear->weight.div_(spec.mamba_residual_divisor());
  }
}

double fla_xavier_gain() { return std::pow(2.0, -2.5); }

void init_fla_projection(torch::nn::Linear& linear, const InitSpec& spec) {
  if (spec.scheme == InitScheme::TinyLlama) return init_input_projection(linear, spec);
  torch::NoGradGuard no_grad;
  torch::nn::init::xavier_uniform_(linear->weight, fla_xavier_gain());
  if (linear->bias.defined()) linear->bias.zero_();
}

void init_fla_output_projection(torch::nn::Linear& linear, const InitSpec& spec) {
  if (spec.scheme == InitScheme::TinyLlama) return init_output_projection(linear, spec);
  init_fla_projection(linear, spec);
  torch::NoGradGuard no_grad;
  linear->weight.div_(spec.mamba_residual_divisor());
}

}  // namespace samba
