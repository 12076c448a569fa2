// Flat parameter buffers (views, buckets, ZeRO-1 pieces, logical segments), AdamW over them
// against libtorch's own AdamW, resharding of optimizer state across world sizes, the
// gradient norm for clipping, and the warmup + cosine schedule.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <set>

#include "samba/core/error.h"
#include "samba/core/config.h"
#include "samba/dist/flat_params.h"
#include "samba/dist/memory_plan.h"
#include "samba/model/analysis.h"
#include "samba/optim/adamw.h"

namespace {

using Named = std::vector<std::pair<std::string, torch::Tensor>>;

Named make_params(const std::vector<std::vector<int64_t>>& shapes, uint64_t seed = 0) {
  torch::manual_seed(seed);
  Named out;
  for (size_t i = 0; i < shapes.size(); ++i)
    out.emplace_back("p" + std::to_string(i), torch::randn(shapes[i]).set_requires_grad(true));
  return out;
}

samba::OptimizerConfig config() {
  samba::OptimizerConfig cfg;
  cfg.beta1 = 0.9;
  cfg.beta2 = 0.95;
  cfg.eps = 1e-8;
  cfg.weight_decay = 0.1;
  return cfg;
}

}  // namespace

TEST(FlatParameters, ParametersAndGradientsViewTheBuffers) {
  auto named = make_params({{7, 5}, {3}, {4, 4}});
  std::vector<torch::Tensor> before;
  for (auto& [n, p] : named) before.push_back(p.detach().clone());
  samba::dist::FlatOptions o;
  o.world = 2;
  o.bucket_bytes = 16 * 4;  // tiny buckets: several of them
  samba::dist::FlatParameters flat(named, o);
  EXPECT_EQ(flat.logical_numel(), 35 + 3 + 16);
  for (size_t i = 0; i < named.size(); ++i) EXPECT_TRUE(torch::equal(named[i].second, before[i])) << "values kept";
  flat.check_views();
  // Writing through the buffer changes the parameter; backward accumulates into the buffer.
  flat.params().fill_(0.5);
  EXPECT_EQ(named[1].second[2].item<float>(), 0.5f);
  (named[0].second.sum() * 2).backward();
  (named[0].second.sum()).backward();
  const auto& s0 = flat.slots()[0];
  EXPECT_TRUE(torch::allclose(flat.grads().narrow(0, s0.physical, s0.numel), torch::full({35}, 3.0f)));
  flat.check_views();
  flat.zero_grad();
  EXPECT_EQ(named[0].second.grad().abs().sum().item<float>(), 0.0f);

  // Buckets: the last parameter first, each padded to split into world pieces.
  ASSERT_GE(flat.buckets().size(), 2u);
  EXPECT_EQ(flat.buckets().front().slots.back(), 2);
  EXPECT_EQ(flat.buckets().back().slots.front(), 0);
  for (const auto& b : flat.buckets()) EXPECT_EQ((b.end - b.begin) % 2, 0);
  // The pieces of both ranks tile the buffer, and their segments cover every logical position once.
  std::set<int64_t> logical;
  int64_t covered = 0;
  for (int r = 0; r < 2; ++r)
    for (auto [lo, hi] : flat.ranges_of(r, true)) {
      covered += hi - lo;
      for (const auto& seg : flat.segments(lo, hi))
        for (int64_t k = 0; k < seg.length; ++k) EXPECT_TRUE(logical.insert(seg.logical + k).second);
    }
  EXPECT_EQ(covered, flat.numel());
  EXPECT_EQ(static_cast<int64_t>(logical.size()), flat.logical_numel());
}

TEST(FlatParameters, TiedParametersAreStoredOnce) {
  auto w = torch::randn({4, 3}).set_requires_grad(true);
  Named named{{"embed.weight", w}, {"lm_head.weight", w}, {"b", torch::randn({2}).set_requires_grad(true)}};
  samba::dist::FlatParameters flat(named, {});
  EXPECT_EQ(flat.slots().size(), 2u);
  EXPECT_EQ(flat.logical_numel(), 14);
}

TEST(FlatParameters, NonFp32IsAClearError) {
  Named named{{"w", torch::randn({3}, torch::kFloat64).set_requires_grad(true)}};
  try {
    samba::dist::FlatParameters flat(named, {});
    FAIL();
  } catch (const samba::Error& e) {
    EXPECT_NE(std::string(e.what()).find("fp32"), std::string::npos) << e.what();
  }
}

TEST(AdamW, MatchesLibtorchAdamW) {
  auto named = make_params({{7, 5}, {6}});
  std::vector<torch::Tensor> refs;
  for (auto& [n, p] : named) refs.push_back(p.detach().clone().set_requires_grad(true));
  samba::dist::FlatParameters flat(named, {});
  const double lr = 1e-2;
  samba::AdamW opt(flat, flat.ranges_of(0, false), config());
  torch::optim::AdamW torch_opt(refs, torch::optim::AdamWOptions(lr).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1));
  for (int i = 0; i < 6; ++i) {
    for (size_t k = 0; k < refs.size(); ++k) {
      auto g = torch::randn(refs[k].sizes());
      named[k].second.mutable_grad().copy_(g);
      refs[k].mutable_grad() = g.clone();
    }
    opt.step(lr);
    torch_opt.step();
  }
  for (size_t k = 0; k < refs.size(); ++k)
    EXPECT_TRUE(torch::allclose(named[k].second, refs[k], 1e-5, 1e-6)) << (named[k].second - refs[k]).abs().max();
  EXPECT_EQ(opt.steps_taken(), 6);
}

TEST(AdamW, Zero1ShardsTogetherEqualTheReplicatedUpdate) {
  auto full = make_params({{9, 5}, {13}, {4, 7}}, 3);
  auto sharded = make_params({{9, 5}, {13}, {4, 7}}, 3);
  samba::dist::FlatParameters ff(full, {});
  samba::dist::FlatOptions o;
  o.world = 3;
  o.bucket_bytes = 40 * 4;
  samba::dist::FlatParameters fs3(sharded, o);
  samba::AdamW whole(ff, ff.ranges_of(0, false), config());
  std::vector<std::unique_ptr<samba::AdamW>> ranks;
  for (int r = 0; r < 3; ++r) ranks.push_back(std::make_unique<samba::AdamW>(fs3, fs3.ranges_of(r, true), config()));
  for (int i = 0; i < 4; ++i) {
    for (size_t k = 0; k < full.size(); ++k) {
      auto g = torch::randn(full[k].second.sizes());
      full[k].second.mutable_grad().copy_(g);
      sharded[k].second.mutable_grad().copy_(g);
    }
    whole.step(1e-2, 0.5);
    for (auto& r : ranks) r->step(1e-2, 0.5);  // each rank updates its own pieces of the shared buffer
  }
  for (size_t k = 0; k < full.size(); ++k) EXPECT_TRUE(torch::equal(full[k].second, sharded[k].second)) << k;
  // The squared gradient norms of the shards add up to the whole one.
  double parts = 0;
  for (auto& r : ranks) parts += r->grad_sq_sum().item<double>();
  EXPECT_NEAR(parts, whole.grad_sq_sum().item<double>(), 1e-4 * parts);
}

TEST(AdamW, StateReshardsAcrossWorldSizesAndBucketSizes) {
  auto shapes = std::vector<std::vector<int64_t>>{{9, 5}, {13}, {4, 7}, {1}};
  // "Saved" by two ZeRO-1 ranks with small buckets; moments = a function of logical position.
  auto src_params = make_params(shapes, 1);
  samba::dist::FlatOptions o2;
  o2.world = 2;
  o2.bucket_bytes = 24 * 4;
  samba::dist::FlatParameters src(src_params, o2);
  std::vector<samba::SavedOptimizerShard> saved;
  std::vector<std::unique_ptr<samba::AdamW>> writers;
  for (int r = 0; r < 2; ++r) {
    writers.push_back(std::make_unique<samba::AdamW>(src, src.ranges_of(r, true), config()));
    auto& w = *writers.back();
    for (const auto& sp : w.spans())
      for (int64_t k = 0; k < sp.length; ++k) {
        w.exp_avg()[sp.offset + k] = static_cast<float>(sp.logical + k);
        w.exp_avg_sq()[sp.offset + k] = static_cast<float>(1000 + sp.logical + k);
      }
    samba::SavedOptimizerShard sh;
    sh.spans = w.spans();
    sh.origin = "rank" + std::to_string(r);
    samba::AdamW* wp = &w;
    sh.read = [wp](const char* which, int64_t off, int64_t len, float* out) {
      auto t = std::string(which) == "exp_avg" ? wp->exp_avg() : wp->exp_avg_sq();
      std::memcpy(out, t.data_ptr<float>() + off, static_cast<size_t>(len) * sizeof(float));
    };
    saved.push_back(std::move(sh));
  }
  for (int world : {1, 3}) {
    auto dst_params = make_params(shapes, 1);
    samba::dist::FlatOptions o;
    o.world = world;
    o.bucket_bytes = 17 * 4;
    samba::dist::FlatParameters dst(dst_params, o);
    for (int r = 0; r < world; ++r) {
      samba::AdamW reader(dst, dst.ranges_of(r, world > 1), config());
      reader.load_state(saved, 7);
      EXPECT_EQ(reader.steps_taken(), 7);
      for (const auto& sp : reader.spans())
        for (int64_t k = 0; k < sp.length; ++k) {
          ASSERT_EQ(reader.exp_avg()[sp.offset + k].item<float>(), static_cast<float>(sp.logical + k));
          ASSERT_EQ(reader.exp_avg_sq()[sp.offset + k].item<float>(), static_cast<float>(1000 + sp.logical + k));
        }
    }
  }
  // A shard missing: the load names the gap instead of training on zeros.
  auto dst_params = make_params(shapes, 1);
  samba::dist::FlatParameters dst(dst_params, {});
  samba::AdamW reader(dst, dst.ranges_of(0, false), config());
  std::vector<samba::SavedOptimizerShard> half{saved[0]};
  try {
    reader.load_state(half, 7);
    FAIL();
  } catch (const samba::Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing a rank's shard"), std::string::npos) << e.what();
  }
}

TEST(Schedule, WarmupThenCosineToMinimum) {
  samba::OptimizerConfig cfg;
  cfg.lr = 1e-3;
  cfg.min_lr = 1e-4;
  cfg.warmup_fraction = 0.1;
  const int64_t total = 100;
  EXPECT_NEAR(samba::learning_rate(cfg, 0, total), 1e-4, 1e-12);  // 1/10 of peak
  EXPECT_NEAR(samba::learning_rate(cfg, 9, total), 1e-3, 1e-12);  // peak at the end of warmup
  EXPECT_NEAR(samba::learning_rate(cfg, 10, total), 1e-3, 1e-12);
  EXPECT_NEAR(samba::learning_rate(cfg, 55, total), 5.5e-4, 1e-9);  // halfway down the cosine
  EXPECT_NEAR(samba::learning_rate(cfg, 100, total), 1e-4, 1e-12);
  for (int64_t s = 10; s < total; ++s)
    EXPECT_LE(samba::learning_rate(cfg, s + 1, total), samba::learning_rate(cfg, s, total) + 1e-15);
}

TEST(Clip, GradientNormMatchesLibtorch) {
  auto named = make_params({{10}, {3, 3}});
  samba::dist::FlatParameters flat(named, {});
  samba::AdamW opt(flat, flat.ranges_of(0, false), config());
  auto ga = torch::randn({10}) * 3, gb = torch::randn({3, 3}) * 3;
  named[0].second.mutable_grad().copy_(ga);
  named[1].second.mutable_grad().copy_(gb);
  auto a2 = torch::zeros({10}).set_requires_grad(true), b2 = torch::zeros({3, 3}).set_requires_grad(true);
  a2.mutable_grad() = ga.clone();
  b2.mutable_grad() = gb.clone();
  const double ref = torch::nn::utils::clip_grad_norm_(std::vector<torch::Tensor>{a2, b2}, 1.0);
  EXPECT_NEAR(std::sqrt(opt.grad_sq_sum().item<double>()), ref, 1e-4 * ref);
  named[0].second.mutable_grad()[3] = std::nanf("");
  EXPECT_FALSE(std::isfinite(opt.grad_sq_sum().item<double>()));
}

// The factor the trainer applies: clip_grad_norm_'s, computed on the device from the norm.
TEST(Clip, ScaleAboveTheLimitOnly) {
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  auto scale = [&](double norm, double max_norm) {
    return samba::clip_scale(torch::full({}, norm, f64), max_norm).item<double>();
  };
  EXPECT_DOUBLE_EQ(scale(4.0, 1.0), 1.0 / (4.0 + 1e-6));
  EXPECT_DOUBLE_EQ(scale(0.5, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(scale(1.0, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(scale(40.0, 0.0), 1.0);  // grad_clip 0: off
  EXPECT_DOUBLE_EQ(scale(std::nan(""), 1.0), 1.0);  // non-finite norms skip the step instead
}

TEST(MemoryPlan, Zero1ShardsOnlyTheMomentsAndTheBigModelsFitOnEightGpus) {
  for (const char* name : {"samba-1.7b", "samba-3.8b"}) {
    const auto cfg = samba::load_model_config(std::string(SAMBA_SOURCE_DIR) + "/configs/models/" + name + ".yaml");
    const auto s = samba::summarize(cfg, 1, 2);
    const auto one = samba::dist::rank_memory(s, 1, false);
    const auto eight = samba::dist::rank_memory(s, 8, true);
    EXPECT_DOUBLE_EQ(one.optimizer, 8.0 * static_cast<double>(s.total_params));
    EXPECT_DOUBLE_EQ(eight.optimizer, one.optimizer / 8);
    EXPECT_DOUBLE_EQ(eight.weights, one.weights);
    EXPECT_DOUBLE_EQ(eight.gradients, one.gradients);
    EXPECT_LT(eight.total(), 141e9 * 0.92) << name << " should fit on 8 H200s with ZeRO-1";
    EXPECT_NE(samba::dist::format_rank_memory(s, {1, 8}).find("yes"), std::string::npos);
  }
}
