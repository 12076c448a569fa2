#include "samba/model/model.h"

#include "samba/core/error.h"
#include "samba/kernels/linear_cross_entropy.h"

namespace samba {

ResidualImpl::ResidualImpl(const ModelConfig& cfg, char symbol_, int64_t index) : symbol(symbol_) {
  norm = register_module("norm", RMSNorm(cfg.d_model, cfg.norm_eps));
  mixer = register_module("mixer", make_sublayer(symbol, cfg, index));
}

torch::Tensor ResidualImpl::forward(const torch::Tensor& x) { return mixer->residual_forward(x, *norm); }

torch::Tensor ResidualImpl::step(const torch::Tensor& x, LayerState& state) {
  return mixer->residual_step(x, *norm, state);
}

LanguageModelImpl::LanguageModelImpl(const ModelConfig& cfg) : cfg_(cfg) {
  validate(cfg_);
  embed = register_module("embed", torch::nn::Embedding(cfg.vocab_size, cfg.d_model));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.n_layers(); ++i) layers->push_back(Residual(cfg, cfg.layers[i], i));
  norm_f = register_module("norm_f", RMSNorm(cfg.d_model, cfg.norm_eps));
  if (!cfg.tie_embeddings)
    lm_head = register_module("lm_head",
                              torch::nn::Linear(torch::nn::LinearOptions(cfg.d_model, cfg.vocab_size).bias(false)));
  init_parameters();
}

void LanguageModelImpl::init_parameters() {
  const InitSpec spec = InitSpec::from_config(cfg_);
  torch::NoGradGuard no_grad;
  const double embed_std = spec.scheme == InitScheme::TinyLlama ? spec.tinyllama_std() : spec.embed_std;
  embed->weight.normal_(0.0, embed_std);
  for (const auto& m : *layers) {
    auto r = m->as<ResidualImpl>();
    r->norm->reset_parameters();
    r->mixer->init_parameters(spec);
  }
  norm_f->reset_parameters();
  if (lm_head) init_input_projection(lm_head, spec);
}

const torch::Tensor& LanguageModelImpl::lm_head_weight() { return lm_head ? lm_head->weight : embed->weight; }

torch::Tensor LanguageModelImpl::hidden_states(const torch::Tensor& tokens) {
  check(tokens.dim() == 2, "model input must be (batch, time) token ids, got ", tokens.sizes());
  auto x = embed(tokens);
  for (const auto& m : *layers) x = m->as<ResidualImpl>()->forward(x);
  return norm_f(x);
}

torch::Tensor LanguageModelImpl::logits_from_hidden(const torch::Tensor& hidden) {
  return torch::nn::functional::linear(hidden, lm_head_weight().to(hidden.scalar_type())).to(torch::kFloat32);
}

torch::Tensor LanguageModelImpl::forward(const torch::Tensor& tokens) { return logits_from_hidden(hidden_states(tokens)); }

torch::Tensor LanguageModelImpl::loss(const torch::Tensor& tokens, const torch::Tensor& targets) {
  // LM head fused with the loss, chunked over tokens: the (tokens x vocab) logits never exist.
  return kernels::linear_cross_entropy(hidden_states(tokens), lm_head_weight(), targets, /*ignore_index=*/-1);
}

DecodeState LanguageModelImpl::make_state(int64_t batch) {
  DecodeState state;
  auto options = embed->weight.options();
  for (const auto& m : *layers) state.push_back(m->as<ResidualImpl>()->mixer->make_state(batch, options));
  return state;
}

torch::Tensor LanguageModelImpl::step(const torch::Tensor& tokens, DecodeState& state) {
  check(tokens.dim() == 2 && tokens.size(1) == 1, "step() takes (batch, 1) token ids, got ", tokens.sizes());
  check(state.size() == layers->size(), "decode state has ", state.size(), " layers, model has ", layers->size());
  auto x = embed(tokens);
  for (size_t i = 0; i < layers->size(); ++i) x = layers[i]->as<ResidualImpl>()->step(x, *state[i]);
  return logits_from_hidden(norm_f(x));
}

}  // namespace samba
