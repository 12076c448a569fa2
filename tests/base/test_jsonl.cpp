#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "io_test_util.h"
#include "samba/io/jsonl.h"

using namespace samba::io;
using nlohmann::json;
using samba::testing::error_of;
using samba::testing::slurp;
using samba::testing::spit;
using samba::testing::TempDir;

TEST(Jsonl, OneObjectPerLineFlushedImmediately) {
  TempDir tmp;
  const auto path = tmp.file("metrics.jsonl");
  JsonlWriter w(path);
  w.write({{"step", 1}, {"loss", 3.25}, {"tag", "train"}});
  // Visible on disk while the writer is still open: a crash must not lose logged lines.
  EXPECT_EQ(slurp(path), "{\"loss\":3.25,\"step\":1,\"tag\":\"train\"}\n");
  w.write({{"step", 2}, {"loss", 3.0}});
  const auto rows = read_jsonl(path);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1]["step"], 2);
  EXPECT_DOUBLE_EQ(rows[1]["loss"].get<double>(), 3.0);
}

TEST(Jsonl, TruncatesUnlessAppending) {
  TempDir tmp;
  const auto path = tmp.file("m.jsonl");
  { JsonlWriter(path).write({{"step", 1}}); }
  { JsonlWriter(path).write({{"step", 2}}); }
  ASSERT_EQ(read_jsonl(path).size(), 1u);
  EXPECT_EQ(read_jsonl(path)[0]["step"], 2);
  { JsonlWriter(path, /*append=*/true).write({{"step", 3}}); }
  const auto rows = read_jsonl(path);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["step"], 2);
  EXPECT_EQ(rows[1]["step"], 3);
  // Appending to a file that does not exist yet simply creates it.
  { JsonlWriter(tmp.file("new.jsonl"), true).write({{"a", 1}}); }
  EXPECT_EQ(read_jsonl(tmp.file("new.jsonl")).size(), 1u);
}

TEST(Jsonl, ResumeDropsPartialLastLine) {
  TempDir tmp;
  const auto path = tmp.file("crash.jsonl");
  spit(path, "{\"step\":1}\n{\"step\":2}\n{\"step\":3,\"lo");  // killed mid-write
  EXPECT_NE(error_of([&] { read_jsonl(path); }).find("line 3"), std::string::npos);
  { JsonlWriter(path, true).write({{"step", 3}}); }
  const auto rows = read_jsonl(path);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[2]["step"], 3);
}

TEST(Jsonl, RejectsNonObjectsAndSurvivesBadUtf8) {
  TempDir tmp;
  const auto path = tmp.file("x.jsonl");
  JsonlWriter w(path);
  EXPECT_NE(error_of([&] { w.write(json::array({1, 2})); }).find("JSON object"),
            std::string::npos);
  w.write({{"name", std::string("bad\xff utf8")}, {"nan", std::nan("")}});
  const auto rows = read_jsonl(path);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_TRUE(rows[0]["nan"].is_null());  // JSON has no NaN; nlohmann writes null
  EXPECT_NE(rows[0]["name"].get<std::string>().find("utf8"), std::string::npos);
}

TEST(Jsonl, ErrorsNameFile) {
  TempDir tmp;
  const auto bad_dir = tmp.file("missing/dir/m.jsonl");
  std::string msg = error_of([&] { JsonlWriter w(bad_dir); });
  EXPECT_NE(msg.find(bad_dir), std::string::npos) << msg;
  msg = error_of([&] { read_jsonl(tmp.file("nope.jsonl")); });
  EXPECT_NE(msg.find("nope.jsonl"), std::string::npos) << msg;
}
