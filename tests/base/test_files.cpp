#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "io_test_util.h"
#include "samba/core/error.h"
#include "samba/io/crc32c.h"
#include "samba/io/files.h"

using namespace samba::io;
using samba::testing::error_of;
using samba::testing::TempDir;
namespace fs = std::filesystem;

namespace {
size_t count_entries(const fs::path& dir) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
  return n;
}
}  // namespace

TEST(Files, AtomicWriteCreatesOverwritesAndLeavesNoTemp) {
  TempDir tmp;
  const auto path = tmp.file("a.bin");
  std::string first(100000, '\0');
  for (size_t i = 0; i < first.size(); ++i) first[i] = static_cast<char>(i * 31);
  write_file_atomic(path, first);
  EXPECT_EQ(read_file(path), first);
  write_file_atomic(path, "short");
  EXPECT_EQ(read_file(path), "short");  // shorter content must not leave a tail behind
  EXPECT_EQ(count_entries(tmp.path()), 1u) << "a temp file was left next to the target";
  write_file_atomic(path, "");
  EXPECT_EQ(read_file(path), "");
}

TEST(Files, UncommittedWriterLeavesTargetUntouched) {
  TempDir tmp;
  const auto path = tmp.file("keep.txt");
  write_file_atomic(path, "old");
  {
    AtomicFileWriter w(path);
    w.write("new content that is never committed");
    EXPECT_TRUE(fs::exists(w.temp_path()));
    EXPECT_EQ(read_file(path), "old");
  }
  EXPECT_EQ(read_file(path), "old");
  EXPECT_EQ(count_entries(tmp.path()), 1u);
}

TEST(Files, StreamingWriterCommits) {
  TempDir tmp;
  const auto path = tmp.file("s.bin");
  AtomicFileWriter w(path);
  w.write("abc");
  w.write("def", 3);
  EXPECT_EQ(w.bytes_written(), 6u);
  EXPECT_FALSE(fs::exists(path));  // invisible until commit
  w.commit();
  EXPECT_EQ(read_file(path), "abcdef");
  EXPECT_NE(error_of([&] { w.commit(); }), "");
}

TEST(Files, ErrorsNameTheFile) {
  TempDir tmp;
  const auto missing = tmp.file("missing.bin");
  std::string msg = error_of([&] { read_file(missing); });
  EXPECT_NE(msg.find(missing), std::string::npos) << msg;
  msg = error_of([&] { MappedFile m(missing); });
  EXPECT_NE(msg.find(missing), std::string::npos) << msg;
  msg = error_of([&] { write_file_atomic(tmp.file("no/such/dir/x"), "y"); });
  EXPECT_NE(msg.find("no/such/dir"), std::string::npos) << msg;
  msg = error_of([&] { read_file(tmp.path().string()); });
  EXPECT_NE(msg.find("directory"), std::string::npos) << msg;
  EXPECT_THROW(fsync_path(missing), samba::Error);
}

TEST(Files, MmapReadsContent) {
  TempDir tmp;
  const auto path = tmp.file("m.bin");
  std::string bytes = "hello mmap\n";
  bytes += std::string(10000, 'z');
  write_file_atomic(path, bytes);
  MappedFile m(path);
  ASSERT_EQ(m.size(), bytes.size());
  EXPECT_EQ(m.view(), bytes);
  EXPECT_EQ(m.path(), path);
  MappedFile moved = std::move(m);
  EXPECT_EQ(m.size(), 0u);
  EXPECT_EQ(moved.view(), bytes);

  write_file_atomic(tmp.file("empty"), "");
  MappedFile e(tmp.file("empty"));
  EXPECT_EQ(e.size(), 0u);
  EXPECT_EQ(e.data(), nullptr);
}

TEST(Files, FsyncHelpers) {
  TempDir tmp;
  write_file_atomic(tmp.file("f"), "x");
  EXPECT_NO_THROW(fsync_path(tmp.file("f")));
  EXPECT_NO_THROW(fsync_dir(tmp.path().string()));
  EXPECT_THROW(fsync_dir(tmp.file("f")), samba::Error);  // not a directory
}

TEST(Files, FileCrcMatchesInMemoryCrc) {
  TempDir tmp;
  std::string bytes(3 << 20, '\0');  // spans several 1 MiB read chunks
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>((i * 2654435761u) >> 13);
  write_file_atomic(tmp.file("c"), bytes);
  const uint32_t want = crc32c(bytes.data(), bytes.size());
  EXPECT_EQ(file_crc32c(tmp.file("c")), want);
  EXPECT_EQ(file_crc32c_hex(tmp.file("c")), crc32c_hex(want));
  EXPECT_EQ(crc32c_hex(0xE3069283u), "e3069283");
  EXPECT_EQ(crc32c_hex(0x1u), "00000001");
}
