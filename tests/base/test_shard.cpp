// Token shard round trip and corruption detection.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "samba/core/error.h"
#include "samba/data/shard.h"
#include "base/io_test_util.h"

namespace fs = std::filesystem;
using namespace samba::data;
using samba::testing::TempDir;

namespace {

std::vector<std::vector<int32_t>> random_docs(uint32_t vocab, int n_docs, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int32_t>> docs(n_docs);
  for (auto& d : docs) {
    d.resize(1 + rng() % 50);
    for (auto& t : d) t = static_cast<int32_t>(3 + rng() % (vocab - 3));
  }
  return docs;
}

std::string write_shard(const fs::path& path, uint32_t vocab, const std::vector<std::vector<int32_t>>& docs) {
  ShardWriter w(path.string(), vocab, 2);
  for (const auto& d : docs) w.add_document(d);
  w.finish();
  return path.string();
}

void flip_byte(const std::string& path, size_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c;
  f.get(c);
  f.seekp(static_cast<std::streamoff>(offset));
  f.put(static_cast<char>(c ^ 0x10));
}

// Opens `path` and returns the error message (empty when it opened).
std::string open_error(const std::string& path, bool verify = true) {
  try {
    ShardReader r(path, ShardOpenOptions{verify});
    return "";
  } catch (const samba::Error& e) {
    return e.what();
  }
}

void expect_message(const std::string& msg, const std::string& path, const std::string& key) {
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find(key), std::string::npos) << msg;
  EXPECT_NE(msg.find("samba data"), std::string::npos) << msg;
}

}  // namespace

class ShardRoundTrip : public ::testing::TestWithParam<uint32_t> {};

TEST_P(ShardRoundTrip, TokensDocsAndHeaderSurvive) {
  const uint32_t vocab = GetParam();
  TempDir dir;
  auto docs = random_docs(vocab, 40, vocab);
  docs.push_back({static_cast<int32_t>(vocab - 1)});  // the largest id must fit the dtype
  const std::string path = write_shard(dir.path() / "a.bin", vocab, docs);
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  ShardReader r(path);
  EXPECT_EQ(r.header().token_bytes, vocab <= 65535 ? 2u : 4u);
  EXPECT_EQ(r.header().vocab_size, vocab);
  EXPECT_EQ(r.header().eos_id, 2);
  EXPECT_EQ(r.header().document_count, docs.size());
  std::vector<int32_t> expected;
  for (const auto& d : docs) {
    expected.insert(expected.end(), d.begin(), d.end());
    expected.push_back(2);
  }
  ASSERT_EQ(r.size(), expected.size());
  EXPECT_EQ(fs::file_size(path), kShardHeaderBytes + expected.size() * r.header().token_bytes);
  for (size_t i = 0; i < expected.size(); ++i) ASSERT_EQ(r.token(i), static_cast<uint32_t>(expected[i])) << i;
  std::vector<int32_t> copied(expected.size() - 5);
  r.copy(5, copied.size(), copied.data());
  EXPECT_TRUE(std::equal(copied.begin(), copied.end(), expected.begin() + 5));
  EXPECT_EQ(r.span()[expected.size() - 1], 2u);
  EXPECT_THROW(r.token(expected.size()), samba::Error);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, ShardRoundTrip, ::testing::Values(300u, 65535u, 65536u, 100000u));

TEST(Shard, HeaderIsLittleEndianAtDocumentedOffsets) {
  TempDir dir;
  const std::string path = write_shard(dir.path() / "a.bin", 1000, {{5, 6, 7}});
  std::ifstream f(path, std::ios::binary);
  std::vector<unsigned char> b((std::istreambuf_iterator<char>(f)), {});
  ASSERT_EQ(b.size(), 64u + 4 * 2);
  EXPECT_EQ(std::string(b.begin(), b.begin() + 8), "SAMBATOK");
  EXPECT_EQ(b[8], 1);                   // version
  EXPECT_EQ(b[12], 2);                  // token bytes
  EXPECT_EQ(b[16] | (b[17] << 8), 1000);  // vocab
  EXPECT_EQ(b[20], 2);                  // eos
  EXPECT_EQ(b[24], 4);                  // tokens (3 + eos)
  EXPECT_EQ(b[32], 1);                  // documents
  EXPECT_EQ(b[64], 5);                  // first token, low byte first
}

TEST(Shard, TruncatedFileDetected) {
  TempDir dir;
  const std::string path = write_shard(dir.path() / "a.bin", 1000, random_docs(1000, 20, 1));
  fs::resize_file(path, fs::file_size(path) - 3);
  expect_message(open_error(path), path, "truncated");
  // Even without payload verification, the size check catches it.
  expect_message(open_error(path, false), path, "truncated");
  fs::resize_file(path, 10);
  expect_message(open_error(path), path, "truncated");
}

TEST(Shard, FlippedPayloadByteDetected) {
  TempDir dir;
  const std::string path = write_shard(dir.path() / "a.bin", 1000, random_docs(1000, 20, 2));
  flip_byte(path, kShardHeaderBytes + 17);
  expect_message(open_error(path), path, "payload CRC32C mismatch");
  EXPECT_EQ(open_error(path, /*verify=*/false), "") << "verify=false skips the payload CRC";
}

TEST(Shard, FlippedHeaderByteDetected) {
  TempDir dir;
  const std::string path = write_shard(dir.path() / "a.bin", 1000, random_docs(1000, 20, 3));
  flip_byte(path, 25);  // inside the token count
  expect_message(open_error(path), path, "corrupt header");
}

TEST(Shard, WrongMagicDetected) {
  TempDir dir;
  const std::string path = write_shard(dir.path() / "a.bin", 1000, random_docs(1000, 5, 4));
  flip_byte(path, 0);
  expect_message(open_error(path), path, "bad magic");
}

TEST(Shard, MissingFileDetected) {
  expect_message(open_error("/nonexistent/x.bin"), "/nonexistent/x.bin", "does not exist");
}

TEST(Shard, OutOfVocabTokenRejected) {
  TempDir dir;
  ShardWriter w((dir.path() / "a.bin").string(), 100, 2);
  EXPECT_THROW(w.add_document({1, 100}), samba::Error);
  EXPECT_THROW(w.add_document({-1}), samba::Error);
}

TEST(Shard, UnfinishedWriterLeavesNothing) {
  TempDir dir;
  const fs::path path = dir.path() / "a.bin";
  {
    ShardWriter w(path.string(), 100, 2);
    w.add_document({5, 6});
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path.string() + ".tmp"));
}
