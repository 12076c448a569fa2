// Tokenizer through the dlopen'd sentencepiece bridge, in a process without torch.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "samba/core/error.h"
#include "samba/data/tokenizer.h"
#include "base/io_test_util.h"

namespace fs = std::filesystem;
using samba::data::Tokenizer;
using samba::testing::TempDir;

namespace {

// Pseudo-English from a syllable inventory: enough distinct words that a few hundred BPE
// merges exist, small enough to train in well under a second.
std::string generated_text(int lines, uint32_t seed) {
  const char* syl[] = {"ka", "lo", "mi", "ten", "sar", "ve", "dun", "pri", "os", "that", "the", "ing", "er", "qu", "zo"};
  std::mt19937 rng(seed);
  std::string text;
  for (int l = 0; l < lines; ++l) {
    int words = 5 + static_cast<int>(rng() % 10);
    for (int w = 0; w < words; ++w) {
      int n = 1 + static_cast<int>(rng() % 3);
      for (int s = 0; s < n; ++s) text += syl[rng() % 15];
      text += (w + 1 < words) ? (rng() % 7 == 0 ? ", " : " ") : ".\n";
    }
  }
  return text;
}

std::string train_small(const TempDir& dir, int vocab) {
  std::ofstream(dir.path() / "train.txt") << generated_text(400, 7);
  samba::data::TrainTokenizerOptions o;
  o.input = (dir.path() / "train.txt").string();
  o.model_prefix = (dir.path() / "tok").string();
  o.vocab_size = vocab;
  o.num_threads = 1;
  return samba::data::train_tokenizer(o);
}

}  // namespace

TEST(Tokenizer, TrainEncodeDecodeRoundTrip) {
  TempDir dir;
  const std::string model = train_small(dir, 320);
  EXPECT_TRUE(fs::exists(model));
  Tokenizer tok = Tokenizer::load(model);
  EXPECT_EQ(tok.vocab_size(), 320);
  EXPECT_EQ(tok.unk_id(), 0);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);

  // Unseen words, punctuation, digits, a newline and non-ASCII text (byte fallback) must all
  // survive exactly: identity normalisation, no whitespace collapsing.
  const std::string text = "kalomi tensar, vedun 1987 costs $3.50!\nZürich  two  spaces — done.";
  std::vector<int32_t> ids = tok.encode(text);
  ASSERT_FALSE(ids.empty());
  for (int32_t id : ids) {
    EXPECT_GE(id, 0);
    EXPECT_LT(id, tok.vocab_size());
    EXPECT_NE(id, tok.unk_id()) << "byte fallback should leave nothing unknown";
  }
  EXPECT_EQ(tok.decode(ids), text);
  // Merges learned on the training text make its words shorter than one token per byte.
  std::vector<int32_t> seen = tok.encode("kalomi tensar vedun");
  EXPECT_LT(seen.size(), std::string("kalomi tensar vedun").size() / 2);
  EXPECT_EQ(tok.piece(tok.eos_id()), "</s>");
}

TEST(Tokenizer, VocabSizeHonoured) {
  TempDir dir;
  Tokenizer tok = Tokenizer::load(train_small(dir, 400));
  EXPECT_EQ(tok.vocab_size(), 400);
}

TEST(Tokenizer, TrainingIsDeterministic) {
  TempDir a, b;
  Tokenizer ta = Tokenizer::load(train_small(a, 330));
  Tokenizer tb = Tokenizer::load(train_small(b, 330));
  const std::string probe = generated_text(3, 99);
  EXPECT_EQ(ta.encode(probe), tb.encode(probe));
}

TEST(Tokenizer, MissingModelGivesClearError) {
  try {
    Tokenizer::load("/nonexistent/dir/tokenizer.model");
    FAIL() << "expected an error";
  } catch (const samba::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("/nonexistent/dir/tokenizer.model"), std::string::npos) << what;
    EXPECT_NE(what.find("does not exist"), std::string::npos) << what;
  }
}

TEST(Tokenizer, GarbageModelGivesClearError) {
  TempDir dir;
  const fs::path bad = dir.path() / "tokenizer.model";
  std::ofstream(bad) << "this is not a protobuf";
  try {
    Tokenizer::load(bad.string());
    FAIL() << "expected an error";
  } catch (const samba::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(bad.string()), std::string::npos) << what;
    EXPECT_NE(what.find("cannot load tokenizer model"), std::string::npos) << what;
  }
}

TEST(Tokenizer, TooSmallVocabRejectedBeforeTraining) {
  TempDir dir;
  EXPECT_THROW(train_small(dir, 100), samba::Error);
}

TEST(Tokenizer, DecodeRejectsOutOfRangeIds) {
  TempDir dir;
  Tokenizer tok = Tokenizer::load(train_small(dir, 300));
  EXPECT_THROW(tok.decode({5, 300}), samba::Error);
}
