// Attention mixers ('*' sliding window, 'A' full), the attention kernel, RoPE and short conv,
// checked against oracles written here in fp64 (explicit masks built with loops, RoPE from
// its formula) rather than against the code under test.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <set>

#include "samba/kernels/attention.h"
#include "samba/model/layers/attention.h"
#include "samba/model/layers/rope.h"
#include "samba/model/layers/short_conv.h"
#include "samba/model/model.h"
#include "test_util.h"

namespace samba {
namespace {

using samba::testing::rel_error;
const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);

// Explicit masked softmax: key j visible to query i (absolute position p = Tk - Tq + i) iff
// p - W < j <= p; GQA through repeat_interleave of the kv heads.
torch::Tensor naive_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t W,
                              double scale) {
  const int64_t Tq = q.size(1), Tk = k.size(1), G = q.size(2) / k.size(2);
  auto kk = k.repeat_interleave(G, 2).permute({0, 2, 1, 3});
  auto vv = v.repeat_interleave(G, 2).permute({0, 2, 1, 3});
  auto s = torch::matmul(q.permute({0, 2, 1, 3}), kk.transpose(-1, -2)) * scale;
  auto visible = torch::zeros({Tq, Tk}, torch::kBool);
  for (int64_t i = 0; i < Tq; ++i)
    for (int64_t j = 0; j < Tk; ++j) {
      const int64_t p = Tk - Tq + i;
      visible[i][j] = j <= p && (W <= 0 || j > p - W);
    }
  s = s.masked_fill(visible.logical_not(), -std::numeric_limits<double>::infinity());
  return torch::matmul(torch::softmax(s, -1), vv).permute({0, 2, 1, 3});
}

// RoPE from its definition: pair (i, i + D/2) rotated by p * base^(-2i/D).
torch::Tensor naive_rope(const torch::Tensor& x, int64_t offset, double base) {
  const int64_t T = x.size(1), D = x.size(3), h = D / 2;
  auto out = x.clone();
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < h; ++i) {
      const double a = static_cast<double>(t + offset) * std::pow(base, -2.0 * i / static_cast<double>(D));
      auto x1 = x.select(1, t).select(-1, i), x2 = x.select(1, t).select(-1, i + h);
      out.select(1, t).select(-1, i).copy_(x1 * std::cos(a) - x2 * std::sin(a));
      out.select(1, t).select(-1, i + h).copy_(x2 * std::cos(a) + x1 * std::sin(a));
    }
  return out;
}

struct AttnOpts {
  int64_t heads = 4, kv_heads = 0, window = 8, head_dim = 0;
  bool rope = true, short_conv = false, bias = false;
  InitScheme init = InitScheme::Mamba;
};

ModelConfig attn_config(const std::string& pattern, AttnOpts o, int64_t d_model = 32) {
  ModelConfig c = samba::testing::tiny_config(pattern, d_model);
  c.attention.n_heads = o.heads;
  c.attention.n_kv_heads = o.kv_heads;
  c.attention.head_dim = o.head_dim;
  c.attention.window = o.window;
  c.attention.rope = o.rope;
  c.attention.short_conv = o.short_conv;
  c.attention.qkv_bias = o.bias;
  c.init = o.init;
  validate(c);
  return c;
}

std::shared_ptr<AttentionImpl> make_layer(const ModelConfig& cfg, char symbol) {
  auto layer = std::dynamic_pointer_cast<AttentionImpl>(make_sublayer(symbol, cfg, 0));
  EXPECT_TRUE(layer != nullptr);
  layer->to(torch::kFloat64);
  return layer;
}

// The whole layer from its definition (no short conv): projections, RoPE, explicit attention.
torch::Tensor naive_layer(AttentionImpl& m, const torch::Tensor& x, double base) {
  const int64_t B = x.size(0), T = x.size(1);
  auto q = m.q_proj(x).reshape({B, T, m.n_heads, m.head_dim});
  auto k = m.k_proj(x).reshape({B, T, m.n_kv_heads, m.head_dim});
  auto v = m.v_proj(x).reshape({B, T, m.n_kv_heads, m.head_dim});
  if (m.rotary) {
    q = naive_rope(q, 0, base);
    k = naive_rope(k, 0, base);
  }
  auto o = naive_attention(q, k, v, m.window, 1.0 / std::sqrt(static_cast<double>(m.head_dim)));
  return m.o_proj(o.reshape({B, T, -1}));
}

TEST(AttentionKernel, MatchesExplicitMaskedSoftmaxForEveryWindow) {
  torch::manual_seed(1);
  auto q = torch::randn({2, 20, 4, 8}, f64), k = torch::randn({2, 20, 2, 8}, f64), v = torch::randn({2, 20, 2, 8}, f64);
  for (int64_t W : {1, 3, 7, 19, 20, 0, 50}) {
    auto want = naive_attention(q, k, v, W, 0.3);
    EXPECT_LT(rel_error(causal_attention(q, k, v, W, 0.3), want), 1e-10) << "W=" << W;
    EXPECT_LT(rel_error(causal_attention_reference(q, k, v, W, 0.3, 3), want), 1e-10) << "blocked W=" << W;
  }
  // Queries at the end of a longer key sequence (prefill against a cache).
  auto q_tail = q.narrow(1, 15, 5).contiguous();
  EXPECT_LT(rel_error(causal_attention(q_tail, k, v, 6, 0.3), naive_attention(q_tail, k, v, 6, 0.3)), 1e-10);
}

TEST(AttentionKernel, QuerySeesExactlyTheLastWKeys) {
  torch::manual_seed(2);
  const int64_t T = 12;
  auto q = torch::randn({1, T, 2, 4}, f64), k = torch::randn({1, T, 2, 4}, f64), v = torch::randn({1, T, 2, 4}, f64);
  for (int64_t W : {int64_t{1}, int64_t{2}, int64_t{5}, T, T + 3}) {
    auto base = causal_attention(q, k, v, W, 0.5);
    for (int64_t j = 0; j < T; ++j) {
      auto k2 = k.clone(), v2 = v.clone();
      k2.select(1, j).add_(1.0);
      v2.select(1, j).add_(1.0);
      auto changed = (causal_attention(q, k2, v2, W, 0.5) - base).abs().amax({0, 2, 3}) > 1e-12;
      for (int64_t i = 0; i < T; ++i) {
        const bool expect = i >= j && i - W < j;
        EXPECT_EQ(changed[i].item<bool>(), expect) << "W=" << W << " key " << j << " query " << i;
      }
    }
  }
}

TEST(AttentionKernel, GroupedQueryEqualsMultiHeadWithRepeatedKV) {
  torch::manual_seed(3);
  auto q = torch::randn({2, 9, 6, 8}, f64);
  for (int64_t hk : {1, 2, 3}) {  // 1 = MQA
    auto k = torch::randn({2, 9, hk, 8}, f64), v = torch::randn({2, 9, hk, 8}, f64);
    auto gqa = causal_attention(q, k, v, 4, 0.35);
    auto mha = causal_attention(q, k.repeat_interleave(6 / hk, 2), v.repeat_interleave(6 / hk, 2), 4, 0.35);
    EXPECT_LT(rel_error(gqa, mha), 1e-12) << "kv heads " << hk;
  }
}

TEST(AttentionKernel, BlockedReferenceEqualsUnblockedForLongSequences) {
  torch::manual_seed(4);
  const int64_t T = 1500;  // above the automatic single-block limit
  auto q = torch::randn({1, T, 2, 8}, f64), k = torch::randn({1, T, 1, 8}, f64), v = torch::randn({1, T, 1, 8}, f64);
  for (int64_t W : {100, 0}) {
    auto whole = causal_attention_reference(q, k, v, W, 0.3, T);
    EXPECT_LT(rel_error(causal_attention_reference(q, k, v, W, 0.3), whole), 1e-12) << "auto blocks, W=" << W;
    EXPECT_LT(rel_error(causal_attention_reference(q, k, v, W, 0.3, 97), whole), 1e-12) << "97-blocks, W=" << W;
  }
}

TEST(AttentionKernel, LowPrecisionInputsAccumulateInFloat32) {
  torch::manual_seed(5);
  auto q = torch::randn({1, 16, 2, 8}, f64), k = torch::randn({1, 16, 2, 8}, f64), v = torch::randn({1, 16, 2, 8}, f64);
  auto out = causal_attention(q.to(torch::kBFloat16), k.to(torch::kBFloat16), v.to(torch::kBFloat16), 5, 0.35);
  EXPECT_EQ(out.scalar_type(), torch::kBFloat16);
  EXPECT_LT(rel_error(out, naive_attention(q, k, v, 5, 0.35)), 3e-2);
}

TEST(AttentionKernel, MeanVisibleKeysMatchesCounting) {
  for (int64_t T : {1, 7, 64}) {
    for (int64_t W : {0, 1, 5, 64, 100}) {
      double sum = 0;
      for (int64_t i = 1; i <= T; ++i) sum += (W <= 0) ? i : std::min(i, W);
      EXPECT_NEAR(mean_visible_keys(T, W), sum / T, 1e-12) << "T=" << T << " W=" << W;
    }
  }
}

TEST(Rope, ScoreDependsOnlyOnRelativePosition) {
  torch::manual_seed(6);
  RotaryEmbedding rope(16, 10000.0);
  auto q = torch::randn({1, 1, 1, 16}, f64), k = torch::randn({1, 1, 1, 16}, f64);
  auto score = [&](int64_t pq, int64_t pk) { return (rope.apply(q, pq) * rope.apply(k, pk)).sum().item<double>(); };
  for (int64_t shift : {1, 37, 5000}) {
    EXPECT_NEAR(score(9, 4), score(9 + shift, 4 + shift), 1e-9) << shift;
    EXPECT_NEAR(score(3, 3), score(3 + shift, 3 + shift), 1e-9) << shift;
  }
  EXPECT_GT(std::abs(score(9, 4) - score(9, 5)), 1e-6);  // it does encode position
  EXPECT_TRUE(torch::allclose(rope.apply(q, 0), q));      // position 0 is the identity
}

TEST(Rope, MatchesDefinitionWithOffsetAndKeepsDtype) {
  torch::manual_seed(7);
  RotaryEmbedding rope(8, 500.0);
  auto x = torch::randn({2, 5, 3, 8}, f64);
  EXPECT_LT(rel_error(rope.apply(x, 11), naive_rope(x, 11, 500.0)), 1e-12);
  // A longer request after a short one rebuilds the cached table.
  EXPECT_LT(rel_error(rope.apply(x, 300), naive_rope(x, 300, 500.0)), 1e-12);
  EXPECT_EQ(rope.apply(x.to(torch::kFloat32), 2).scalar_type(), torch::kFloat32);
}

TEST(ShortConv, CausalDepthwiseConvThenSiluAndStepMatches) {
  torch::manual_seed(8);
  ShortConv conv(6, 4);
  conv->to(torch::kFloat64);
  EXPECT_EQ(conv->weight.sizes(), torch::IntArrayRef({6, 1, 4}));
  auto x = torch::randn({2, 9, 6}, f64);
  auto y = conv(x);
  auto want = torch::zeros_like(x);
  for (int64_t t = 0; t < 9; ++t)
    for (int64_t j = 0; j < 4; ++j)
      if (t - 3 + j >= 0) want.select(1, t) += x.select(1, t - 3 + j) * conv->weight.select(2, j).squeeze(1);
  EXPECT_LT(rel_error(y, torch::silu(want)), 1e-12);
  torch::NoGradGuard no_grad;
  auto state = conv->make_state(2, f64);
  for (int64_t t = 0; t < 9; ++t)
    EXPECT_LT(rel_error(conv->step(x.narrow(1, t, 1), state), y.narrow(1, t, 1)), 1e-12) << t;
}

TEST(AttentionLayer, EqualsExplicitComputationWithRopeAndNope) {
  for (bool rope : {true, false}) {
    for (char sym : {'*', 'A'}) {
      torch::manual_seed(9);
      AttnOpts o;
      o.rope = rope;
      o.kv_heads = 2;
      o.bias = true;
      auto cfg = attn_config(std::string(1, sym) + "-", o);
      auto m = make_layer(cfg, sym);
      EXPECT_EQ(m->rotary.has_value(), rope);
      EXPECT_EQ(m->window, sym == '*' ? 8 : 0);
      auto x = torch::randn({2, 20, 32}, f64);
      EXPECT_LT(rel_error(m->forward(x), naive_layer(*m, x, cfg.attention.rope_base)), 1e-10)
          << sym << " rope=" << rope;
    }
  }
}

TEST(AttentionLayer, NopeHasNoRotation) {
  // Without positions, full attention is blind to the order of the earlier tokens: the last
  // output is unchanged when they are reversed. RoPE makes it order-aware.
  for (bool rope : {false, true}) {
    torch::manual_seed(10);
    AttnOpts o;
    o.rope = rope;
    auto m = make_layer(attn_config("A-", o), 'A');
    auto x = torch::randn({1, 10, 32}, f64);
    auto shuffled = torch::cat({x.narrow(1, 0, 9).flip({1}), x.narrow(1, 9, 1)}, 1);
    const double change = rel_error(m->forward(shuffled).select(1, 9), m->forward(x).select(1, 9));
    if (rope)
      EXPECT_GT(change, 1e-6);
    else
      EXPECT_LT(change, 1e-12);
  }
}

TEST(AttentionLayer, IsCausal) {
  for (bool sc : {false, true}) {
    torch::manual_seed(11);
    AttnOpts o;
    o.short_conv = sc;
    auto m = make_layer(attn_config("*-", o), '*');
    auto x = torch::randn({1, 16, 32}, f64);
    auto y = m->forward(x);
    auto x2 = x.clone();
    x2.select(1, 9).add_(1.0);
    auto diff = (m->forward(x2) - y).abs().amax({0, 2});
    for (int64_t t = 0; t < 16; ++t) EXPECT_EQ(diff[t].item<double>() > 0, t >= 9) << "sc=" << sc << " t=" << t;
  }
}

TEST(AttentionLayer, GradientsFiniteAndReachEveryParameter) {
  for (bool sc : {false, true}) {
    torch::manual_seed(12);
    AttnOpts o;
    o.short_conv = sc;
    o.bias = true;
    o.kv_heads = 1;
    auto m = make_layer(attn_config("*-", o), '*');
    auto x = torch::randn({2, 12, 32}, f64).requires_grad_(true);
    m->forward(x).pow(2).sum().backward();
    int64_t count = 0;
    for (const auto& p : m->named_parameters()) {
      ASSERT_TRUE(p.value().grad().defined()) << p.key();
      EXPECT_TRUE(torch::isfinite(p.value().grad()).all().item<bool>()) << p.key();
      EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0) << p.key();
      ++count;
    }
    EXPECT_EQ(count, sc ? 10 : 7);
    EXPECT_TRUE(torch::isfinite(x.grad()).all().item<bool>());
  }
}

TEST(AttentionLayer, DeterministicForwardAndConstruction) {
  auto build = [] {
    torch::manual_seed(13);
    AttnOpts o;
    o.short_conv = true;
    return make_layer(attn_config("*-", o), '*');
  };
  auto a = build(), b = build();
  auto x = torch::randn({2, 10, 32}, f64);
  EXPECT_TRUE(torch::equal(a->forward(x), a->forward(x)));
  EXPECT_TRUE(torch::equal(a->forward(x), b->forward(x)));
}

// Feeds tokens one at a time and compares with the full-sequence forward.
void expect_step_matches_forward(char sym, AttnOpts o, int64_t T) {
  torch::manual_seed(14);
  auto m = make_layer(attn_config(std::string(1, sym) + "-", o), sym);
  auto x = torch::randn({2, T, 32}, f64);
  torch::NoGradGuard no_grad;
  auto full = m->forward(x);
  auto state = m->make_state(2, f64);
  for (int64_t t = 0; t < T; ++t)
    ASSERT_LT(rel_error(m->step(x.narrow(1, t, 1), *state), full.narrow(1, t, 1)), 1e-10) << sym << " t=" << t;
  auto& st = dynamic_cast<AttentionState&>(*state);
  if (sym == '*') EXPECT_EQ(st.k.size(1), o.window);  // the ring never grows
}

TEST(AttentionLayer, StepEqualsForwardSlidingPastTheWindow) {
  AttnOpts o;
  o.window = 5;
  expect_step_matches_forward('*', o, 23);
  o.kv_heads = 2;
  o.short_conv = true;
  expect_step_matches_forward('*', o, 23);
  o.window = 1;
  expect_step_matches_forward('*', o, 6);
}

TEST(AttentionLayer, StepEqualsForwardFullAttentionGrowingCache) {
  AttnOpts o;
  o.kv_heads = 1;
  expect_step_matches_forward('A', o, 70);  // past the initial capacity of 64
  o.short_conv = true;
  o.rope = false;
  expect_step_matches_forward('A', o, 12);
}

TEST(AttentionLayer, ModelStepEqualsModelForward) {
  torch::manual_seed(15);
  auto cfg = samba::testing::tiny_config("*-A-");
  LanguageModel model(cfg);
  model->to(torch::kFloat64);
  auto tokens = torch::randint(0, cfg.vocab_size, {1, 14}, torch::kLong);
  torch::NoGradGuard no_grad;
  auto logits = model->forward(tokens);
  auto state = model->make_state(1);
  for (int64_t t = 0; t < 14; ++t)
    ASSERT_LT(rel_error(model->step(tokens.narrow(1, t, 1), state), logits.narrow(1, t, 1)), 1e-9) << t;
}

double std_of(const torch::Tensor& w) { return w.std().item<double>(); }

TEST(AttentionLayer, TinyLlamaInitStatistics) {
  torch::manual_seed(16);
  AttnOpts o;
  o.init = InitScheme::TinyLlama;
  o.bias = true;
  auto cfg = attn_config("*-*-", o, 256);
  auto m = make_layer(cfg, '*');
  m->init_parameters(InitSpec::from_config(cfg));
  const double in_std = std::sqrt(2.0 / (5.0 * 256)), out_std = 1.0 / (std::sqrt(256.0) * cfg.blocks());
  EXPECT_EQ(cfg.blocks(), 2);
  for (auto* lin : {&m->q_proj, &m->k_proj, &m->v_proj}) {
    EXPECT_NEAR(std_of((*lin)->weight), in_std, 0.03 * in_std);
    EXPECT_EQ((*lin)->bias.abs().sum().item<double>(), 0.0);
  }
  EXPECT_NEAR(std_of(m->o_proj->weight), out_std, 0.03 * out_std);
}

TEST(AttentionLayer, MambaInitScalesOutputProjection) {
  torch::manual_seed(17);
  auto cfg = attn_config("M*-", AttnOpts{}, 256);
  auto m = make_layer(cfg, '*');
  m->init_parameters(InitSpec::from_config(cfg));
  // PyTorch default: U(+-1/sqrt(fan_in)), std 1/sqrt(3 fan_in); o_proj / sqrt(n_sublayers = 3).
  const double in_std = 1.0 / std::sqrt(3.0 * 256);
  EXPECT_NEAR(std_of(m->q_proj->weight), in_std, 0.03 * in_std);
  EXPECT_NEAR(std_of(m->o_proj->weight), in_std / std::sqrt(3.0), 0.03 * in_std / std::sqrt(3.0));
}

TEST(AttentionSpec, AnalyticCountsMatchTheModule) {
  std::vector<AttnOpts> variants(5);
  variants[1].kv_heads = 2;
  variants[2].kv_heads = 1;
  variants[2].bias = true;
  variants[3].short_conv = true;
  variants[3].kv_heads = 2;
  variants[4].head_dim = 12;
  variants[4].bias = true;
  for (const auto& o : variants) {
    for (char sym : {'*', 'A'}) {
      auto cfg = attn_config(std::string(1, sym) + "-", o);
      auto m = make_sublayer(sym, cfg, 0);
      int64_t real = 0;
      for (const auto& p : m->parameters()) real += p.numel();
      EXPECT_EQ(sublayer_spec(sym).num_params(cfg), real) << sym << " kv " << o.kv_heads << " sc " << o.short_conv;
    }
  }
}

TEST(AttentionSpec, FlopsCountVisibleKeys) {
  AttnOpts o;
  o.window = 16;
  auto cfg = attn_config("*A-", o);
  const double proj = 2.0 * (32 * 3 * 32 + 32 * 32);
  const auto& swa = sublayer_spec('*');
  const auto& full = sublayer_spec('A');
  EXPECT_EQ(std::string(swa.name), "swa");
  EXPECT_DOUBLE_EQ(full.forward_flops_per_token(cfg, 31), proj + 4.0 * 32 * 16.0);
  // Far past the window every query sees W keys, so SWA cost per token stops growing.
  EXPECT_NEAR(swa.forward_flops_per_token(cfg, 1 << 20), proj + 4.0 * 32 * 16.0, 1.0);
  EXPECT_LT(swa.forward_flops_per_token(cfg, 4096), full.forward_flops_per_token(cfg, 4096));
  EXPECT_GT(swa.saved_activations_per_token(cfg), 0);
}

}  // namespace
}  // namespace samba
