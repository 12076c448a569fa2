// prepare_dataset end to end on a few generated documents, and the manifest read back.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>

#include "samba/core/error.h"
#include "samba/core/progress.h"
#include "samba/data/loader.h"
#include "samba/data/prepare.h"
#include "samba/data/tokenizer.h"
#include "base/io_test_util.h"
#include "samba/io/files.h"

namespace fs = std::filesystem;
using namespace samba::data;
using samba::testing::TempDir;

namespace {

std::string paragraph(std::mt19937& rng) {
  const char* words[] = {"the", "river", "ran", "past", "old", "mill", "where", "children", "played",
                         "every", "summer", "and", "their", "voices", "carried", "over", "water", "stones",
                         "quiet", "evening", "light", "fell", "on", "roofs", "of", "town", "market", "bread"};
  std::string p;
  const int n = 20 + static_cast<int>(rng() % 30);
  for (int i = 0; i < n; ++i) {
    std::string w = words[rng() % 28];
    if (i == 0) w[0] = static_cast<char>(std::toupper(w[0]));
    p += w + (i + 1 == n ? "." : (rng() % 9 == 0 ? ", " : " "));
  }
  return p;
}

// 30 .txt documents in a nested directory plus a JSONL file of 10 more.
void write_corpus(const fs::path& root) {
  std::mt19937 rng(11);
  fs::create_directories(root / "txt" / "sub");
  for (int d = 0; d < 30; ++d) {
    std::ofstream f(root / "txt" / (d % 2 ? "sub" : "") / ("doc" + std::to_string(d) + ".txt"));
    f << paragraph(rng) << "\n\n" << paragraph(rng) << "\n";
  }
  std::ofstream(root / "txt" / "README.md") << "ignored: not .txt";
  std::ofstream j(root / "more.jsonl");
  for (int d = 0; d < 10; ++d) {
    nlohmann::json line = {{"text", paragraph(rng) + "\n\n" + paragraph(rng)}, {"id", d}};
    j << line.dump() << "\n";
  }
}

PrepareOptions small_options(const TempDir& dir) {
  PrepareOptions o;
  o.inputs = {(dir.path() / "corpus" / "txt").string(), (dir.path() / "corpus" / "more.jsonl").string()};
  o.out_dir = (dir.path() / "out").string();
  o.vocab_size = 320;
  o.val_fraction = 0.1;
  o.seed = 5;
  o.progress = false;
  o.num_threads = 2;
  return o;
}

}  // namespace

TEST(Prepare, EndToEnd) {
  TempDir dir;
  write_corpus(dir.path() / "corpus");
  const DatasetManifest m = prepare_dataset(small_options(dir));

  EXPECT_EQ(m.train_docs + m.val_docs, 40u);
  EXPECT_EQ(m.val_docs, 4u);  // 10% of 40
  EXPECT_EQ(m.vocab_size, 320);
  EXPECT_EQ(m.eos_id, 2);
  EXPECT_GT(m.train_tokens, 1000u);
  EXPECT_TRUE(std::isfinite(m.unigram_val_ppl));
  EXPECT_GT(m.unigram_val_ppl, 1.0);
  EXPECT_LT(m.unigram_val_ppl, 320.0) << "a unigram fit must beat the uniform distribution";
  EXPECT_TRUE(fs::exists(dir.path() / "out" / "tokenizer.model"));
  EXPECT_FALSE(fs::exists(dir.path() / "out" / "tokenizer_train.txt"));

  const DatasetManifest back = load_dataset_manifest((dir.path() / "out").string());
  EXPECT_EQ(back.train_tokens, m.train_tokens);
  EXPECT_EQ(back.val_tokens, m.val_tokens);
  EXPECT_EQ(back.train_docs, m.train_docs);
  EXPECT_DOUBLE_EQ(back.unigram_val_ppl, m.unigram_val_ppl);
  ASSERT_EQ(back.train.size(), m.train.size());
  EXPECT_EQ(back.train[0].crc32c, m.train[0].crc32c);

  // The shards decode back to the documents' text, EOS-separated.
  Tokenizer tok = Tokenizer::load(back.tokenizer);
  ShardReader val(back.val_paths()[0]);
  EXPECT_EQ(val.header().document_count, m.val_docs);
  std::vector<int32_t> ids(val.size());
  val.copy(0, ids.size(), ids.data());
  EXPECT_EQ(ids.back(), m.eos_id);
  const std::vector<int32_t> first_doc(ids.begin(), std::find(ids.begin(), ids.end(), m.eos_id));
  const std::string text = tok.decode(first_doc);
  EXPECT_NE(text.find("\n\n"), std::string::npos) << "paragraph breaks survive tokenization";

  // And the loader can train on them.
  LoaderOptions lo;
  lo.seq_len = 32;
  PackedLoader loader(back.train_paths(), lo);
  EXPECT_EQ(loader.next_batch(2).size(), 66u);
}

TEST(Prepare, DeterministicSplitAndShards) {
  TempDir a, b;
  write_corpus(a.path() / "corpus");
  write_corpus(b.path() / "corpus");
  PrepareOptions oa = small_options(a), ob = small_options(b);
  ob.num_threads = 1;  // the thread count must not change the output
  const DatasetManifest ma = prepare_dataset(oa), mb = prepare_dataset(ob);
  EXPECT_EQ(ma.train[0].crc32c, mb.train[0].crc32c);
  EXPECT_EQ(ma.val[0].crc32c, mb.val[0].crc32c);
  ob.seed = 6;
  ob.out_dir = (b.path() / "out2").string();
  const DatasetManifest mc = prepare_dataset(ob);
  EXPECT_NE(ma.val[0].crc32c, mc.val[0].crc32c) << "another seed holds out other documents";
}

TEST(Prepare, ExistingTokenizerAndMaxDocsAndShardRollover) {
  TempDir dir;
  write_corpus(dir.path() / "corpus");
  const DatasetManifest first = prepare_dataset(small_options(dir));
  PrepareOptions o = small_options(dir);
  o.out_dir = (dir.path() / "reuse").string();
  o.tokenizer = first.tokenizer;
  o.max_docs = 12;
  o.shard_tokens = 500;
  const DatasetManifest m = prepare_dataset(o);
  EXPECT_EQ(m.train_docs + m.val_docs, 12u);
  EXPECT_EQ(m.val_docs, 3u) << "min_val_docs applies when the fraction rounds lower";
  EXPECT_GT(m.train.size(), 1u) << "shards roll over at shard_tokens";
  EXPECT_EQ(load_dataset_manifest(o.out_dir).train.size(), m.train.size());
}

TEST(Prepare, ClearErrors) {
  TempDir dir;
  auto message = [](const std::function<void()>& fn) {
    try {
      fn();
    } catch (const samba::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  PrepareOptions o;
  o.out_dir = (dir.path() / "out").string();
  o.inputs = {(dir.path() / "missing").string()};
  EXPECT_NE(message([&] { prepare_dataset(o); }).find("does not exist"), std::string::npos);

  std::ofstream(dir.path() / "bad.jsonl") << "{\"text\": \"fine\"}\n{\"body\": \"no text\"}\n";
  o.inputs = {(dir.path() / "bad.jsonl").string()};
  const std::string bad = message([&] { prepare_dataset(o); });
  EXPECT_NE(bad.find("line 2"), std::string::npos) << bad;

  std::ofstream(dir.path() / "one.txt") << "only one document";
  o.inputs = {(dir.path() / "one.txt").string()};
  EXPECT_NE(message([&] { prepare_dataset(o); }).find("at least 2"), std::string::npos);

  const std::string none = message([&] { load_dataset_manifest((dir.path() / "nowhere").string()); });
  EXPECT_NE(none.find("samba data"), std::string::npos) << none;
}

namespace {

std::string error_message(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const samba::Error& e) {
    return e.what();
  }
  return "no error";
}

void flip_byte(const std::string& path, size_t offset) {
  std::string bytes = samba::testing::slurp(path);
  ASSERT_LT(offset, bytes.size());
  bytes[offset] = static_cast<char>(bytes[offset] ^ 0x20);
  samba::testing::spit(path, bytes);
}

}  // namespace

TEST(Prepare, ManifestChecksumsTokenizerFilesAndShardSizes) {
  TempDir dir;
  write_corpus(dir.path() / "corpus");
  const PrepareOptions o = small_options(dir);
  const DatasetManifest m = prepare_dataset(o);
  ASSERT_EQ(m.files.size(), 2u);
  EXPECT_EQ(m.files[0].file, "tokenizer.model");
  EXPECT_EQ(m.files[1].file, "tokenizer.vocab");
  EXPECT_EQ(m.files[0].bytes, fs::file_size(dir.path() / "out" / "tokenizer.model"));
  EXPECT_EQ(m.files[0].crc32c, samba::io::file_crc32c((dir.path() / "out" / "tokenizer.model").string()));
  EXPECT_EQ(m.train[0].bytes, fs::file_size(dir.path() / "out" / m.train[0].file));
  const DatasetManifest back = load_dataset_manifest(o.out_dir);
  ASSERT_EQ(back.files.size(), 2u);
  EXPECT_EQ(back.files[1].crc32c, m.files[1].crc32c);
  EXPECT_EQ(back.val[0].bytes, m.val[0].bytes);
}

TEST(Prepare, DamagedTokenizerOrShardIsNamedOnLoad) {
  TempDir dir;
  write_corpus(dir.path() / "corpus");
  const PrepareOptions o = small_options(dir);
  prepare_dataset(o);
  const std::string model = (dir.path() / "out" / "tokenizer.model").string();
  const std::string vocab = (dir.path() / "out" / "tokenizer.vocab").string();
  const std::string pristine_model = samba::testing::slurp(model), pristine_vocab = samba::testing::slurp(vocab);

  flip_byte(model, pristine_model.size() / 2);  // same size, different bytes
  std::string msg = error_message([&] { load_dataset_manifest(o.out_dir); });
  EXPECT_NE(msg.find("tokenizer.model' is damaged"), std::string::npos) << msg;
  EXPECT_NE(msg.find("CRC32C"), std::string::npos) << msg;
  samba::testing::spit(model, pristine_model);

  samba::testing::spit(vocab, pristine_vocab.substr(0, pristine_vocab.size() / 2));  // truncated
  msg = error_message([&] { load_dataset_manifest(o.out_dir); });
  EXPECT_NE(msg.find("tokenizer.vocab' is damaged: " + std::to_string(pristine_vocab.size() / 2) + " bytes"),
            std::string::npos)
      << msg;
  samba::testing::spit(vocab, pristine_vocab);
  EXPECT_NO_THROW(load_dataset_manifest(o.out_dir));

  // A flipped token in the validation shard is found when the manifest is loaded (before any
  // training step), not at the first evaluation.
  const std::string val = (dir.path() / "out" / "val_000.bin").string();
  const std::string pristine_val = samba::testing::slurp(val);
  flip_byte(val, pristine_val.size() - 3);
  msg = error_message([&] { load_dataset_manifest(o.out_dir); });
  EXPECT_NE(msg.find("val_000.bin"), std::string::npos) << msg;
  samba::testing::spit(val, pristine_val);

  const std::string train = (dir.path() / "out" / "train_000.bin").string();
  samba::testing::spit(train, samba::testing::slurp(train) + "extra");
  msg = error_message([&] { load_dataset_manifest(o.out_dir); });
  EXPECT_NE(msg.find("train_000.bin"), std::string::npos) << msg;
}

TEST(Prepare, VersionOneManifestWithoutChecksumsStillLoads) {
  TempDir dir;
  write_corpus(dir.path() / "corpus");
  const PrepareOptions o = small_options(dir);
  prepare_dataset(o);
  const std::string path = (dir.path() / "out" / "dataset.json").string();
  nlohmann::json j = nlohmann::json::parse(samba::testing::slurp(path));
  j["version"] = 1;
  j.erase("files");
  for (auto& s : j["train"]["shards"]) s.erase("bytes");
  for (auto& s : j["val"]["shards"]) s.erase("bytes");
  samba::testing::spit(path, j.dump());
  const DatasetManifest m = load_dataset_manifest(o.out_dir);
  EXPECT_TRUE(m.files.empty());
  EXPECT_EQ(m.train[0].bytes, 0u);
  // Version 2 without the checksums is not an old manifest but a damaged one.
  j["version"] = 2;
  samba::testing::spit(path, j.dump());
  EXPECT_NE(error_message([&] { load_dataset_manifest(o.out_dir); }).find("missing a field"), std::string::npos);
}

TEST(Prepare, LeftoversOfAnInterruptedRunAreRemoved) {
  TempDir dir;
  write_corpus(dir.path() / "corpus");
  const PrepareOptions o = small_options(dir);
  fs::create_directories(o.out_dir);
  // What SIGKILL during `samba data` leaves: a half-written shard and the tokenizer's text.
  samba::testing::spit(o.out_dir + "/train_000.bin.tmp", "half a shard");
  samba::testing::spit(o.out_dir + "/val_003.bin.tmp", "half a shard");
  samba::testing::spit(o.out_dir + "/tokenizer_train.txt", "sentences");
  samba::testing::spit(o.out_dir + "/notes.bin.tmp", "not ours");
  prepare_dataset(o);
  EXPECT_FALSE(fs::exists(o.out_dir + "/train_000.bin.tmp"));
  EXPECT_FALSE(fs::exists(o.out_dir + "/val_003.bin.tmp"));
  EXPECT_FALSE(fs::exists(o.out_dir + "/tokenizer_train.txt"));
  EXPECT_TRUE(fs::exists(o.out_dir + "/notes.bin.tmp")) << "only names samba data writes are removed";
}

TEST(Prepare, FailureRemovesItsTemporaries) {
  TempDir dir;
  write_corpus(dir.path() / "corpus");
  PrepareOptions o = small_options(dir);
  o.vocab_size = 50000;  // far more pieces than the corpus has: the tokenizer trainer fails
  const std::string msg = error_message([&] { prepare_dataset(o); });
  EXPECT_NE(msg.find("tokenizer training"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(o.out_dir + "/tokenizer_train.txt")) << "a failed run must not leave its temporaries";
  EXPECT_FALSE(fs::exists(o.out_dir + "/dataset.json"));
}

TEST(Prepare, UnigramPerplexityMath) {
  // Uniform counts over V tokens give perplexity V; a peaked fit scores its own data lower.
  EXPECT_NEAR(unigram_perplexity({10, 10, 10, 10}, {1, 1, 1, 1}), 4.0, 1e-9);
  EXPECT_LT(unigram_perplexity({100, 1, 1, 1}, {10, 0, 0, 0}), 1.1);
}

TEST(Progress, PlainLinesWithRateAndEta) {
  samba::ProgressOptions po;
  po.unit = "tok";
  po.force_tty = 0;
  samba::Progress p("tokenizing", 1000, po, nullptr);
  p.update(250);
  const std::string line = p.line();
  EXPECT_NE(line.find("25.0%"), std::string::npos) << line;
  EXPECT_NE(line.find("250/1.00k tok"), std::string::npos) << line;
  EXPECT_NE(line.find("ETA"), std::string::npos) << line;
  EXPECT_EQ(samba::Progress::human(1234567), "1.23M");
  EXPECT_EQ(samba::Progress::duration(3725), "1h02m");
  EXPECT_EQ(samba::Progress::duration(65), "1m05s");
}
