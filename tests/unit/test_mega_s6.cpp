// Mega-S6 ('S'): the block (gated residual x + u * (h - x) on the raw stream, norm inside)
// against a loop-by-loop fp64 re-implementation of the reference, attention confined to
// chunks, causality (also across chunk boundaries), gradients, determinism, the reference's
// initialisation, parameter counts (layer and the 422M paper config), decoding steps.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>

#include "samba/core/error.h"
#include "samba/model/analysis.h"
#include "samba/model/layers/mega_s6.h"
#include "samba/model/model.h"
#include "test_util.h"

namespace samba {
namespace {

using samba::testing::rel_error;
using samba::testing::tiny_config;

constexpr int64_t kD = 16;
constexpr int64_t kChunk = 4;

ModelConfig small_config(int64_t chunk = kChunk) {
  ModelConfig c = tiny_config("S-", kD);
  c.mega.chunk_size = chunk;
  c.mamba.d_state = 4;
  validate(c);
  return c;
}

// An fp64 layer whose attention parameters are O(1), so that the attention pattern (not
// just the uniform average the 0.02 init gives) shows in every comparison.
MegaS6 make_layer(const ModelConfig& cfg, uint64_t seed = 7) {
  torch::manual_seed(seed);
  MegaS6 m(cfg);
  m->init_parameters(InitSpec::from_config(cfg));
  m->to(torch::kFloat64);
  torch::NoGradGuard no_grad;
  m->qk_gamma.normal_(0.0, 1.0);
  m->qk_beta.normal_(0.0, 0.5);
  m->rel_pos_alpha.normal_(0.0, 1.0);
  m->rel_pos_beta.normal_(0.0, 1.0);
  return m;
}

// The stack's pre-norm handed to the block (the reference's self.norm), with a non-trivial scale.
RMSNorm test_norm() {
  RMSNorm norm(kD, 1e-5);
  norm->to(torch::kFloat64);
  torch::NoGradGuard no_grad;
  norm->weight.copy_(torch::linspace(0.5, 1.5, kD, torch::kFloat64));
  return norm;
}

// One residual sublayer: what the stack computes for an 'S' layer.
torch::Tensor block(MegaS6& m, const torch::Tensor& x) { return m->residual_forward(x, *test_norm()); }

torch::Tensor random_input(int64_t batch, int64_t T, uint64_t seed = 11) {
  torch::manual_seed(seed);
  return torch::randn({batch, T, kD}, torch::kFloat64);
}

// The block written out one time step and one key at a time, from the reference
// (lit_gpt/mega.py: x = norm(residual) inside, out = addcmul(residual, u, h - residual)).
torch::Tensor naive_forward(MegaS6Impl& m, const torch::Tensor& x_raw) {
  torch::NoGradGuard no_grad;
  const auto norm_w = torch::linspace(0.5, 1.5, kD, torch::kFloat64);
  const auto x = x_raw * torch::rsqrt(x_raw.pow(2).mean(-1, true) + 1e-5) * norm_w;
  const auto& dm = m.dims;
  const int64_t batch = x.size(0), T = x.size(1), d = dm.d_model, z = dm.z_dim, half = z / 2;
  const int64_t K = dm.d_conv, R = dm.dt_rank, N = dm.d_state;
  auto w = m.conv1d->weight.squeeze(1);  // (d, K)
  auto A = -torch::exp(m.A_log);
  auto rotate = [&](const torch::Tensor& v, int64_t p) {
    auto out = torch::empty_like(v);
    for (int64_t c = 0; c < half; ++c) {
      const double theta = static_cast<double>(p) * std::pow(10000.0, -static_cast<double>(c) / static_cast<double>(half));
      out[c] = v[c] * std::cos(theta) - v[c + half] * std::sin(theta);
      out[c + half] = v[c + half] * std::cos(theta) + v[c] * std::sin(theta);
    }
    return out;
  };
  auto out = torch::zeros({batch, T, d}, torch::kFloat64);
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<torch::Tensor> q(T), k(T), v(T), u(T), r(T), hx(T);
    auto state = torch::zeros({d, N}, torch::kFloat64);
    for (int64_t t = 0; t < T; ++t) {
      auto c = m.conv1d->bias.clone();
      for (int64_t j = 0; j < K; ++j) {
        const int64_t src = t - (K - 1) + j;
        if (src >= 0) c = c + w.select(1, j) * x[b][src];
      }
      c = torch::silu(c);
      auto dbl = torch::matmul(m.x_proj->weight, c);
      auto delta = torch::softplus(torch::matmul(m.dt_proj->weight, dbl.slice(0, 0, R)) + m.dt_proj->bias);
      auto Bt = dbl.slice(0, R, R + N), Ct = dbl.slice(0, R + N, R + 2 * N);
      state = torch::exp(delta.unsqueeze(1) * A) * state + (delta * c).unsqueeze(1) * Bt.unsqueeze(0);
      auto y = torch::matmul(state, Ct) + m.D * c;
      auto base = torch::matmul(m.mx_proj->weight, torch::silu(y)) + m.mx_proj->bias;
      u[t] = torch::sigmoid(base.slice(0, 0, d));
      auto zq = torch::silu(base.slice(0, d, d + z));
      r[t] = torch::silu(base.slice(0, d + z, d + z + dm.hidden));
      hx[t] = base.slice(0, d + z + dm.hidden);
      q[t] = zq * m.qk_gamma[0] + m.qk_beta[0];
      k[t] = zq * m.qk_gamma[1] + m.qk_beta[1];
      v[t] = torch::silu(torch::matmul(m.v_proj->weight, x[b][t]) + m.v_proj->bias);
    }
    for (int64_t i = 0; i < T; ++i) {
      const int64_t start = (i / dm.chunk) * dm.chunk;  // keys before the chunk start are invisible
      std::vector<double> scores;
      double top = -1e300;
      for (int64_t j = start; j <= i; ++j) {
        const double bias = torch::dot(rotate(m.rel_pos_alpha, i - start), rotate(m.rel_pos_beta, j - start)).item<double>();
        scores.push_back(torch::dot(q[i], k[j]).item<double>() / std::sqrt(static_cast<double>(z)) + bias);
        top = std::max(top, scores.back());
      }
      double total = 0;
      for (double& s : scores) total += (s = std::exp(s - top));
      auto a = torch::zeros({dm.hidden}, torch::kFloat64);
      for (int64_t j = start; j <= i; ++j) a = a + (scores[j - start] / total) * v[j];
      auto h = torch::silu(hx[i] + torch::matmul(m.h_proj->weight, a * r[i]) + m.h_proj->bias);
      out[b][i] = x_raw[b][i] + u[i] * (h - x_raw[b][i]);
    }
  }
  return out;
}

int64_t count_params(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

TEST(MegaS6, MatchesNaiveReimplementationWithChunkedAttention) {
  auto cfg = small_config();
  auto m = make_layer(cfg);
  // 10 tokens in chunks of 4: two full chunks and a partial one (padding path).
  auto x = random_input(2, 10);
  auto got = block(m, x);
  auto want = naive_forward(*m, x);
  EXPECT_LT(rel_error(got, want), 1e-10);
  // A sequence shorter than one chunk is one chunk.
  auto cfg_long = small_config(64);
  auto m_long = make_layer(cfg_long);
  auto x_short = random_input(1, 7, 3);
  EXPECT_LT(rel_error(block(m_long, x_short), naive_forward(*m_long, x_short)), 1e-10);
}

TEST(MegaS6, ChunkSizeChangesTheOutputOnlyAfterTheFirstChunk) {
  // Same parameters, chunk 4 versus one chunk: identical up to token 3, different after
  // (if attention leaked across chunks, the chunk setting would change nothing).
  auto a = make_layer(small_config(kChunk), 5);
  auto b = make_layer(small_config(64), 5);
  auto x = random_input(1, 12);
  torch::NoGradGuard no_grad;
  auto ya = block(a, x), yb = block(b, x);
  EXPECT_LT(rel_error(ya.narrow(1, 0, kChunk), yb.narrow(1, 0, kChunk)), 1e-12);
  EXPECT_GT((ya.narrow(1, kChunk, 8) - yb.narrow(1, kChunk, 8)).abs().max().item<double>(), 1e-6);
}

TEST(MegaS6, IsCausalWithinAndAcrossChunks) {
  auto m = make_layer(small_config());
  auto x = random_input(2, 12);
  torch::NoGradGuard no_grad;
  auto y = block(m, x);
  for (int64_t t : {0, 2, 3, 4, 5, 9, 11}) {  // chunk starts, ends and middles
    auto x2 = x.clone();
    x2.select(1, t).add_(torch::randn({2, kD}, torch::kFloat64));
    auto y2 = block(m, x2);
    if (t > 0) EXPECT_LT((y2.narrow(1, 0, t) - y.narrow(1, 0, t)).abs().max().item<double>(), 1e-13) << "t=" << t;
    EXPECT_GT((y2.select(1, t) - y.select(1, t)).abs().max().item<double>(), 1e-8) << "t=" << t;
  }
  // A change in chunk 0 still reaches chunk 2 (through the S6 recurrence).
  auto x3 = x.clone();
  x3.select(1, 1).add_(1.0);
  auto y3 = block(m, x3);
  EXPECT_GT((y3.narrow(1, 8, 4) - y.narrow(1, 8, 4)).abs().max().item<double>(), 1e-10);
}

TEST(MegaS6, GradientsAreFiniteAndReachEveryParameter) {
  auto m = make_layer(small_config());
  auto x = random_input(2, 10).requires_grad_(true);
  torch::manual_seed(1);
  auto loss = (block(m, x) * torch::randn({2, 10, kD}, torch::kFloat64)).sum();
  loss.backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_TRUE(torch::isfinite(x.grad()).all().item<bool>());
  for (const auto& p : m->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_TRUE(torch::isfinite(p.value().grad()).all().item<bool>()) << p.key();
    EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0.0) << p.key();
  }
}

TEST(MegaS6, IsDeterministic) {
  auto cfg = small_config();
  auto a = make_layer(cfg, 21), b = make_layer(cfg, 21);
  auto x = random_input(2, 9);
  torch::NoGradGuard no_grad;
  auto ya = block(a, x);
  EXPECT_TRUE(torch::equal(ya, block(a, x)));
  EXPECT_TRUE(torch::equal(ya, block(b, x)));
}

// The highway mix itself: a closed gate (u -> 0) passes the raw stream through unchanged
// (a pre-norm residual x + u * h would too, but an open gate tells them apart), an open
// gate (u -> 1) replaces the stream by h, whatever the stream was.
TEST(MegaS6, GateInterpolatesBetweenStreamAndCandidate) {
  auto m = make_layer(small_config());
  auto x = random_input(2, 6);
  torch::NoGradGuard no_grad;
  m->mx_proj->bias.narrow(0, 0, kD).fill_(-1e3);  // u = sigmoid(-1000) = 0
  EXPECT_LT((block(m, x) - x).abs().max().item<double>(), 1e-12);
  m->mx_proj->bias.narrow(0, 0, kD).fill_(1e3);  // u = 1: out = h, a function of norm(x) only
  auto y1 = block(m, x);
  auto y2 = block(m, x * 3.0);  // RMSNorm is scale invariant, so h is unchanged
  EXPECT_LT(rel_error(y1, y2), 1e-4);  // up to the norm's eps
  EXPECT_GT((y1 - x).abs().max().item<double>(), 0.1);
}

TEST(MegaS6, PlainForwardIsRefused) {
  auto m = make_layer(small_config());
  EXPECT_THROW(m->forward(random_input(1, 3)), Error);
}

// The reference's reset_parameters under mamba_init: v_proj, mx_proj, h_proj N(0, 0.02) with
// zero biases, h_proj NOT divided by sqrt(r * n_blocks) (24 sublayers here); gamma N(0, 0.02),
// beta 0.
TEST(MegaS6, InitMatchesTheReference) {
  ModelConfig cfg = tiny_config("S-", 256);
  cfg.repeat = 12;
  cfg.layers.clear();
  for (int i = 0; i < 12; ++i) cfg.layers += "S-";
  validate(cfg);
  const auto spec = InitSpec::from_config(cfg);
  ASSERT_EQ(spec.n_sublayers, 24);
  torch::manual_seed(4);
  MegaS6 m(cfg);
  m->init_parameters(spec);
  for (auto* l : {&m->v_proj, &m->mx_proj, &m->h_proj}) {
    EXPECT_NEAR((*l)->weight.std().item<double>(), 0.02, 0.001);
    EXPECT_NEAR((*l)->weight.mean().item<double>(), 0.0, 0.001);
    EXPECT_EQ((*l)->bias.abs().max().item<double>(), 0.0);
  }
  EXPECT_NEAR(m->qk_gamma.std().item<double>(), 0.02, 0.003);
  EXPECT_EQ(m->qk_beta.abs().max().item<double>(), 0.0);
  // The S6 keeps Mamba's init: A = -(n + 1), D = 1, softplus(dt bias) in [dt_min, dt_max].
  EXPECT_NEAR(m->A_log[0][3].item<double>(), std::log(4.0), 1e-6);
  EXPECT_EQ(m->D.min().item<double>(), 1.0);
  auto dt = torch::softplus(m->dt_proj->bias);
  EXPECT_GE(dt.min().item<double>(), cfg.mamba.dt_min * 0.999);
  EXPECT_LE(dt.max().item<double>(), cfg.mamba.dt_max * 1.001);
}

TEST(MegaS6, AnalyticParameterCountMatchesTheModule) {
  std::vector<ModelConfig> cfgs{small_config()};
  cfgs.push_back(small_config());
  cfgs.back().mega.z_dim = 6;
  cfgs.back().mega.hidden_expand = 2;
  cfgs.push_back(small_config());
  cfgs.back().mamba.conv_bias = false;
  cfgs.back().mamba.d_conv = 3;
  for (const auto& cfg : cfgs) {
    MegaS6 m(cfg);
    EXPECT_EQ(count_params(*m), sublayer_spec(layer_char::kMegaS6).num_params(cfg));
  }
  auto cfg = small_config();
  LanguageModel model(cfg);
  EXPECT_EQ(count_params(*model), summarize(cfg).total_params);
}

TEST(MegaS6, PaperConfigHas422MParameters) {
  auto cfg = load_model_config(std::string(SAMBA_SOURCE_DIR) + "/configs/models/mega-s6-422m.yaml");
  const auto& spec = sublayer_spec(layer_char::kMegaS6);
  const int64_t mixer = spec.num_params(cfg);
  // d 1536, z 128, hidden 1536, N 16, K 4, dt_rank 48 (see the formula in mega_s6.cpp).
  EXPECT_EQ(mixer, 12233600);
  const int64_t d = cfg.d_model;
  const int64_t total = cfg.vocab_size * d + 12 * (mixer + 3 * d * cfg.mlp_hidden + 2 * d) + d;
  EXPECT_EQ(total, summarize(cfg).total_params);
  std::printf("mega-s6-422m: %lld parameters (mixer %lld, paper 422M, %+.2f%%)\n", static_cast<long long>(total),
              static_cast<long long>(mixer), 100.0 * (static_cast<double>(total) / 422e6 - 1.0));
  EXPECT_NEAR(static_cast<double>(total) / 422e6, 1.0, 0.03);
}

TEST(MegaS6, FlopsCountChunkLimitedKeys) {
  auto cfg = small_config(8);
  const auto& spec = sublayer_spec(layer_char::kMegaS6);
  const auto m = MegaS6Dims::from_config(cfg);
  const double per_key = 2.0 * static_cast<double>(m.z_dim + m.hidden);
  // context 1: one key; context 8 (one chunk): 4.5 keys on average; context 24: still 4.5.
  EXPECT_NEAR(spec.forward_flops_per_token(cfg, 8) - spec.forward_flops_per_token(cfg, 1), per_key * 3.5, 1e-6);
  EXPECT_NEAR(spec.forward_flops_per_token(cfg, 24), spec.forward_flops_per_token(cfg, 8), 1e-6);
  EXPECT_GT(spec.saved_activations_per_token(cfg), 0.0);
}

TEST(MegaS6, StepMatchesForwardAcrossChunks) {
  auto m = make_layer(small_config());
  auto x = random_input(2, 11);  // 2.75 chunks
  torch::NoGradGuard no_grad;
  auto want = block(m, x);
  auto norm = test_norm();
  auto state = m->make_state(2, torch::TensorOptions().dtype(torch::kFloat64));
  std::vector<torch::Tensor> steps;
  for (int64_t t = 0; t < 11; ++t) steps.push_back(m->residual_step(x.narrow(1, t, 1), *norm, *state));
  EXPECT_LT(rel_error(torch::cat(steps, 1), want), 1e-10);
}

TEST(MegaS6, LanguageModelDecodesLikeItsForward) {
  auto cfg = small_config();
  torch::manual_seed(3);
  LanguageModel model(cfg);
  model->to(torch::kFloat64);
  auto tokens = torch::randint(0, cfg.vocab_size, {2, 9}, torch::kInt64);
  torch::NoGradGuard no_grad;
  auto logits = model->forward(tokens);
  ASSERT_TRUE(torch::isfinite(logits).all().item<bool>());
  auto state = model->make_state(2);
  std::vector<torch::Tensor> steps;
  for (int64_t t = 0; t < 9; ++t) steps.push_back(model->step(tokens.narrow(1, t, 1), state));
  EXPECT_LT(rel_error(torch::cat(steps, 1), logits), 1e-10);
}

}  // namespace
}  // namespace samba
