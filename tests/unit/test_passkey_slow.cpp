// A short passkey fine-tune teaches a small full-attention model to retrieve the key, and the
// grid scores it: so the evaluation can tell a model that retrieves from one that does not.
// (Labelled slow: ~10 s on an idle 2-core machine.)
#include <gtest/gtest.h>

#include "samba/eval/passkey.h"
#include "test_util.h"
#include "unit/passkey_test_util.h"

namespace {

using samba::testing::WordEncoder;

TEST(Passkey, FinetuneTeachesRetrievalAndTheGridScoresIt) {
  torch::manual_seed(0);
  auto cfg = samba::testing::tiny_config("A-A-", 64);
  cfg.vocab_size = 128;
  samba::validate(cfg);
  samba::LanguageModel model(cfg);
  WordEncoder enc;
  samba::PasskeyGenerator gen(enc, 2, 7);
  const int64_t len = gen.min_length() + 8;
  const std::vector<double> depths{0.0, 1.0};
  auto before = samba::evaluate_passkey(model, gen, {len}, depths, 8);
  EXPECT_EQ(before.mean(), 0.0) << "an untrained model does not guess five digits";
  samba::PasskeyFinetuneOptions o;
  o.steps = 150;
  o.length = len;
  o.batch = 16;
  o.lr = 3e-3;
  o.progress = false;
  auto losses = samba::finetune_passkey(model, gen, o);
  ASSERT_EQ(losses.size(), 150u);
  EXPECT_LT(losses.back(), 0.5 * losses.front());
  auto after = samba::evaluate_passkey(model, gen, {len}, depths, 8);
  ASSERT_EQ(after.accuracy.size(), 2u);
  ASSERT_EQ(after.accuracy[0].size(), 1u);
  EXPECT_GT(after.mean(), 0.5) << "loss " << losses.front() << " -> " << losses.back();
}

}  // namespace
