#include "samba/model/model.h"

#include "samba/core/error.h"
#include "samba/kernels/linear_cross_entropy.h"
#include "samba/kernels/rms_norm.h"

#include <ATen/autocast_mode.h>

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

namespace {
// The dtype the matmuls run in: autocast's on CUDA when it is on, else the stream's.
torch::ScalarType matmul_dtype(const torch::Tensor& x) {
#if TORCH_VERSION_MAJOR >= 2
  if (x.is_cuda() && at::autocast::is_autocast_enabled(at::kCUDA)) return at::autocast::get_autocast_dtype(at::kCUDA);
#endif
  return x.scalar_type();
}
}  // namespace

bool LanguageModelImpl::fused_residual_path(const torch::Tensor& x) {
  if (!x.is_cuda() || x.scalar_type() != torch::kFloat32 || kernels::use_reference_kernels()) return false;
  for (const auto& m : *layers)
    if (m->as<ResidualImpl>()->mixer->owns_residual()) return false;
  return kernels::rms_norm_residual_cuda_supports(x, x, matmul_dtype(x));
}

// Same function as the loop below: stream_{i+1} = stream_i + f_i(norm_i(stream_i)), with the
// add of f_i's output folded into norm_{i+1}'s kernel (fp32 stream, normalised output in the
// matmul dtype). The final norm returns fp32 like norm_f.
torch::Tensor LanguageModelImpl::hidden_states_fused(torch::Tensor x) {
  const auto y_dtype = matmul_dtype(x);
  torch::Tensor residual;  // undefined before the first layer: the kernel takes x as the stream
  for (const auto& m : *layers) {
    auto r = m->as<ResidualImpl>();
    auto [y, stream] = kernels::rms_norm_residual(x, residual, r->norm->weight, r->norm->eps, y_dtype);
    residual = stream;
    x = r->mixer->forward(y);
  }
  return std::get<0>(kernels::rms_norm_residual(x, residual, norm_f->weight, norm_f->eps, torch::kFloat32));
}

torch::Tensor LanguageModelImpl::hidden_states(const torch::Tensor& tokens) {
  check(tokens.dim() == 2, "model input must be (batch, time) token ids, got ", tokens.sizes());
  auto x = embed(tokens);
  if (fused_residual_path(x)) return hidden_states_fused(x);
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
