// Prefix perplexity (spec section 6): every length scores the prefixes of the same blocks;
// per-rank sums add up to the one-process result; the standard error is the spread of the
// per-block losses; too little validation data is an error naming the fix.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "base/io_test_util.h"
#include "samba/core/error.h"
#include "samba/data/shard.h"
#include "samba/eval/perplexity.h"
#include "test_util.h"

namespace {

using samba::EvalOptions;

class PrefixPerplexity : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(5);
    auto cfg = samba::testing::tiny_config("*-", 32);
    model_ = samba::LanguageModel(cfg);
    // Two shards, so blocks cross a shard boundary; a tail shorter than a block is unused.
    std::mt19937 rng(3);
    for (int s = 0; s < 2; ++s) {
      const std::string path = dir_.file("val_" + std::to_string(s) + ".bin");
      samba::data::ShardWriter w(path, 64, 2);
      for (int d = 0; d < 9; ++d) {
        std::vector<int32_t> doc(70 + static_cast<size_t>(rng() % 40));
        for (auto& t : doc) t = static_cast<int32_t>(3 + rng() % 61);
        w.add_document(doc);
      }
      w.finish();
      shards_.push_back(path);
    }
    for (const auto& p : shards_) {
      samba::data::ShardReader r(p);
      for (uint64_t i = 0; i < r.size(); ++i) stream_.push_back(static_cast<int32_t>(r.token(i)));
    }
  }

  // Mean loss of the first `c` predictions of block b (blocks of longest+1 tokens).
  double block_loss(int64_t b, int64_t longest, int64_t c) {
    torch::NoGradGuard ng;
    model_->eval();
    std::vector<int64_t> toks(stream_.begin() + b * longest, stream_.begin() + b * longest + c + 1);
    auto t = torch::tensor(toks, torch::kLong).unsqueeze(0);
    auto logits = model_->forward(t.slice(1, 0, c));
    return torch::nn::functional::cross_entropy(logits.reshape({c, -1}), t.slice(1, 1, c + 1).reshape({-1}))
        .item<double>();
  }

  samba::testing::TempDir dir_;
  samba::LanguageModel model_{nullptr};
  std::vector<std::string> shards_;
  std::vector<int32_t> stream_;
};

TEST_F(PrefixPerplexity, EveryLengthScoresPrefixesOfTheSameBlocks) {
  EvalOptions o;
  o.max_tokens = 6 * 64;  // six blocks at the longest context
  o.batch_tokens = 128;   // two blocks per forward: exercises the batching
  const std::vector<int64_t> contexts{16, 32, 64};
  auto results = samba::evaluate_prefix_perplexity(model_, shards_, contexts, o);
  ASSERT_EQ(results.size(), 3u);
  for (size_t i = 0; i < contexts.size(); ++i) {
    const auto& r = results[i];
    EXPECT_EQ(r.context, contexts[i]);
    EXPECT_EQ(r.blocks, 6);
    EXPECT_EQ(r.tokens, 6 * contexts[i]);
    double sum = 0, sq = 0;
    for (int64_t b = 0; b < 6; ++b) {
      const double l = block_loss(b, 64, contexts[i]);
      sum += l;
      sq += l * l;
    }
    const double mean = sum / 6;
    EXPECT_NEAR(r.loss, mean, 1e-5) << "context " << contexts[i];
    EXPECT_NEAR(r.ppl, std::exp(mean), 1e-4 * std::exp(mean));
    const double se = std::sqrt((sq - 6 * mean * mean) / 5 / 6);
    EXPECT_NEAR(r.loss_se, se, 1e-5);
    EXPECT_GT(r.loss_se, 0);
    EXPECT_NEAR(r.ppl_se, r.ppl * r.loss_se, 1e-9 * r.ppl);
  }
}

TEST_F(PrefixPerplexity, RankSumsAddUpToTheWhole) {
  EvalOptions o;
  o.max_tokens = 1 << 20;  // all blocks the data holds
  const std::vector<int64_t> contexts{24, 48};
  const int64_t blocks = samba::perplexity_blocks(shards_, contexts, o);
  EXPECT_EQ(blocks, static_cast<int64_t>((stream_.size() - 1) / 48));
  auto whole = samba::evaluate_prefix_perplexity(model_, shards_, contexts, o);
  std::vector<double> total;
  std::vector<samba::PerplexitySums> like;
  for (int rank = 0; rank < 3; ++rank) {
    auto s = samba::perplexity_sums(model_, shards_, contexts, o, rank, 3);
    auto flat = samba::pack_sums(s);
    if (total.empty()) total.assign(flat.size(), 0.0), like = s;
    for (size_t i = 0; i < flat.size(); ++i) total[i] += flat[i];
  }
  auto reduced = samba::unpack_sums(total, like);
  for (size_t i = 0; i < contexts.size(); ++i) {
    auto r = samba::finalize_perplexity(reduced[i]);
    EXPECT_EQ(r.blocks, blocks);
    EXPECT_EQ(r.context, contexts[i]);
    // The model runs in fp32 and each rank's batch has its own shape, so BLAS may block the
    // matmuls differently (seen: 1.8e-9 on an AMD EPYC): equal to fp32 rounding, summed in fp64.
    EXPECT_NEAR(r.loss, whole[i].loss, 1e-6 * std::abs(whole[i].loss));
    EXPECT_NEAR(r.loss_se, whole[i].loss_se, 1e-6 * std::max(1.0, std::abs(whole[i].loss_se)));
  }
}

TEST_F(PrefixPerplexity, SingleContextKeepsTheTrainerSignature) {
  EvalOptions o;
  o.max_tokens = 3 * 20;
  auto r = samba::evaluate_perplexity(model_, shards_, 20, o);
  EXPECT_EQ(r.blocks, 3);
  EXPECT_EQ(r.tokens, 60);
  const double mean = (block_loss(0, 20, 20) + block_loss(1, 20, 20) + block_loss(2, 20, 20)) / 3;
  EXPECT_NEAR(r.loss, mean, 1e-5);
  o.max_blocks = 1;
  auto one = samba::evaluate_perplexity(model_, shards_, 20, o);
  EXPECT_EQ(one.blocks, 1);
  EXPECT_EQ(one.loss_se, 0.0);  // no spread from one block
}

TEST_F(PrefixPerplexity, TooLittleDataOrBadArgumentsAreErrors) {
  EvalOptions o;
  try {
    samba::evaluate_prefix_perplexity(model_, shards_, {16, static_cast<int64_t>(stream_.size())}, o);
    FAIL() << "a block longer than the data was accepted";
  } catch (const samba::Error& e) {
    EXPECT_NE(std::string(e.what()).find("--val-fraction"), std::string::npos) << e.what();
  }
  EXPECT_THROW(samba::evaluate_prefix_perplexity(model_, shards_, {}, o), samba::Error);
  EXPECT_THROW(samba::evaluate_prefix_perplexity(model_, shards_, {0}, o), samba::Error);
  EXPECT_THROW(samba::perplexity_sums(model_, shards_, {8}, o, 2, 2), samba::Error);
  o.max_tokens = 0;
  EXPECT_THROW(samba::evaluate_prefix_perplexity(model_, shards_, {8}, o), samba::Error);
}

}  // namespace
