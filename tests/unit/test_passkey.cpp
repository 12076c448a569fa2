// Passkey documents have the exact length, the key where the depth says and the answer at the
// end; bad lengths and depths are errors. (The fine-tune test is in test_passkey_slow.cpp.)
#include <gtest/gtest.h>

#include <map>

#include "samba/core/error.h"
#include "samba/eval/passkey.h"
#include "unit/passkey_test_util.h"

namespace {

using samba::testing::WordEncoder;

TEST(Passkey, DocumentsHaveTheLengthTheKeyAndTheDepth) {
  WordEncoder enc;
  samba::PasskeyGenerator gen(enc, /*start=*/2, /*seed=*/1);
  const int64_t len = gen.min_length() + 200;
  int64_t previous = -1;
  for (double depth : samba::even_depths(5)) {
    auto s = gen.make(len, depth);
    ASSERT_EQ(static_cast<int64_t>(s.tokens.size()), len);
    EXPECT_EQ(s.tokens.front(), 2);
    EXPECT_EQ(s.key.size(), 5u);
    // The answer is the key's digits, at the very end, and repeated inside the needle.
    ASSERT_EQ(s.answer_len, 5);
    EXPECT_EQ(s.answer_begin + s.answer_len, len);
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(s.tokens[static_cast<size_t>(s.answer_begin + i)], 3 + (s.key[static_cast<size_t>(i)] - '0'));
      EXPECT_EQ(s.tokens[static_cast<size_t>(s.repeat_begin + i)], 3 + (s.key[static_cast<size_t>(i)] - '0'));
    }
    EXPECT_GT(s.needle_begin, previous) << "deeper needles come later";
    previous = s.needle_begin;
  }
  // Depth 0 is right after the introduction; depth 1 leaves less than one filler sentence after.
  auto first = gen.make(len, 0.0), last = gen.make(len, 1.0);
  EXPECT_EQ(first.needle_begin, 1 + static_cast<int64_t>(enc("There is an important piece of information hidden inside a lot of "
                                                          "irrelevant text. Find it and memorize it. I will quiz you about "
                                                          "the important information there.").size()));
  const auto filler = static_cast<int64_t>(enc(" The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.").size());
  const auto question = static_cast<int64_t>(enc(" What is the pass key? The pass key is").size());
  const int64_t needle_len = last.repeat_begin + 5 - last.needle_begin + static_cast<int64_t>(enc(" is the pass key.").size());
  EXPECT_LT(last.answer_begin - question - (last.needle_begin + needle_len), filler);
  // Fixed keys are used as given; random keys differ.
  EXPECT_EQ(gen.make(len, 0.5, "31415").key, "31415");
  EXPECT_NE(gen.make(len, 0.5).key, gen.make(len, 0.5).key);
}

TEST(Passkey, TooShortOrBadDepthIsAnError) {
  WordEncoder enc;
  samba::PasskeyGenerator gen(enc, -1, 1);
  try {
    gen.make(20, 0.5);
    FAIL() << "a 20-token document was accepted";
  } catch (const samba::Error& e) {
    EXPECT_NE(std::string(e.what()).find("at least"), std::string::npos) << e.what();
  }
  EXPECT_THROW(gen.make(gen.min_length() + 10, 1.5), samba::Error);
  EXPECT_THROW(samba::even_depths(0), samba::Error);
}

}  // namespace
