#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>

#include "io_test_util.h"
#include "samba/io/crc32c.h"
#include "samba/io/tensorboard.h"

using namespace samba::io;
using samba::testing::error_of;
using samba::testing::slurp;
using samba::testing::spit;
using samba::testing::TempDir;

namespace {

// Writes a small log and returns its path.
std::string write_log(const TempDir& tmp, int steps) {
  EventWriter w(tmp.file("run"));
  for (int s = 0; s < steps; ++s) {
    w.add_scalar("train/loss", 4.0f / static_cast<float>(s + 1), s * 10, 1000.0 + s);
    w.add_scalar("train/lr", 1e-3f * static_cast<float>(s), s * 10, 1000.5 + s);
  }
  return w.path();  // the destructor flushes
}

}  // namespace

TEST(TensorBoard, FileNameAndFirstRecord) {
  TempDir tmp;
  const auto path = write_log(tmp, 0);
  const auto name = std::filesystem::path(path).filename().string();
  EXPECT_EQ(name.rfind("events.out.tfevents.", 0), 0u) << name;
  const std::string bytes = slurp(path);
  // The file_version event must be first, or TensorBoard does not recognise the file.
  EXPECT_NE(bytes.find("brain.Event:2"), std::string::npos);
  EXPECT_TRUE(read_tensorboard_scalars(path).empty());

  // A second writer in the same second gets its own file instead of clobbering the first.
  EventWriter again(tmp.file("run"));
  EXPECT_NE(again.path(), path);
}

TEST(TensorBoard, FramingMatchesTfRecordByHand) {
  TempDir tmp;
  const std::string bytes = slurp(write_log(tmp, 0));
  ASSERT_GE(bytes.size(), 16u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  ASSERT_EQ(bytes.size(), 16 + n) << "the file should hold exactly one record";
  auto le32 = [&](size_t at) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(bytes[at + i]);
    return v;
  };
  EXPECT_EQ(le32(8), masked_crc32c(crc32c(bytes.data(), 8)));
  EXPECT_EQ(le32(12 + n), masked_crc32c(crc32c(bytes.data() + 12, n)));
  // Event: field 1 fixed64 (key 0x09), field 2 varint (0x10), field 3 string (0x1a).
  EXPECT_EQ(static_cast<unsigned char>(bytes[12]), 0x09);
  EXPECT_EQ(static_cast<unsigned char>(bytes[21]), 0x10);
  EXPECT_EQ(static_cast<unsigned char>(bytes[23]), 0x1a);
  EXPECT_EQ(bytes.substr(25, 13), "brain.Event:2");
}

TEST(TensorBoard, ScalarsRoundTrip) {
  TempDir tmp;
  const int steps = 50;
  const auto events = read_tensorboard_scalars(write_log(tmp, steps));
  ASSERT_EQ(events.size(), 2u * steps);
  for (int s = 0; s < steps; ++s) {
    const auto& loss = events[2 * s];
    const auto& lr = events[2 * s + 1];
    EXPECT_EQ(loss.tag, "train/loss");
    EXPECT_EQ(loss.step, s * 10);
    EXPECT_EQ(loss.value, 4.0f / static_cast<float>(s + 1));
    EXPECT_EQ(loss.wall_time, 1000.0 + s);
    EXPECT_EQ(lr.tag, "train/lr");
    EXPECT_EQ(lr.value, 1e-3f * static_cast<float>(s));
    EXPECT_EQ(lr.wall_time, 1000.5 + s);
  }
}

TEST(TensorBoard, EdgeValues) {
  TempDir tmp;
  std::string path;
  {
    EventWriter w(tmp.file("edge"));
    w.add_scalar("neg/step", -2.5f, -7);  // negative int64 is a 10-byte varint
    w.add_scalar("big", 3.0e38f, int64_t{1} << 40);
    w.add_scalar("nan", std::nanf(""), 3);
    w.add_scalar(std::string(300, 't'), 1.0f, 4);  // tag longer than a 1-byte varint length
    w.flush();
    path = w.path();
    EXPECT_EQ(read_tensorboard_scalars(path).size(), 4u) << "flush() should make records visible";
  }
  const auto ev = read_tensorboard_scalars(path);
  ASSERT_EQ(ev.size(), 4u);
  EXPECT_EQ(ev[0].step, -7);
  EXPECT_EQ(ev[0].value, -2.5f);
  EXPECT_EQ(ev[1].step, int64_t{1} << 40);
  EXPECT_EQ(ev[1].value, 3.0e38f);
  EXPECT_TRUE(std::isnan(ev[2].value));
  EXPECT_EQ(ev[3].tag, std::string(300, 't'));
  EXPECT_GT(ev[0].wall_time, 1.5e9);  // real clock when no timestamp is given
}

TEST(TensorBoard, EveryFlippedByteIsCaught) {
  TempDir tmp;
  const auto path = write_log(tmp, 3);
  const std::string good = slurp(path);
  // Flip each byte in turn: every position is covered by one of the two CRCs (or is a CRC).
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] ^= 0x20;
    spit(path, bad);
    std::string msg = error_of([&] { read_tensorboard_scalars(path); });
    ASSERT_FALSE(msg.empty()) << "flip at byte " << i << " went unnoticed";
    ASSERT_TRUE(msg.find("CRC mismatch") != std::string::npos ||
                msg.find("truncated") != std::string::npos)
        << msg;
    ASSERT_NE(msg.find("record "), std::string::npos) << msg;
  }
  // Spot-check the reported location: second record, data area.
  std::string bad = good;
  uint64_t n0 = static_cast<unsigned char>(good[0]);  // first record is short (< 256 bytes)
  const size_t second = 16 + n0;
  bad[second + 14] ^= 0x01;
  spit(path, bad);
  std::string msg = error_of([&] { read_tensorboard_scalars(path); });
  EXPECT_NE(msg.find("record 1 at byte " + std::to_string(second)), std::string::npos) << msg;
  EXPECT_NE(msg.find("data CRC mismatch"), std::string::npos) << msg;
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
}

TEST(TensorBoard, TruncationDetected) {
  TempDir tmp;
  const auto path = write_log(tmp, 3);
  const std::string good = slurp(path);
  for (size_t cut : {good.size() - 1, good.size() - 4, good.size() - 20, size_t{5}}) {
    spit(path, good.substr(0, cut));
    std::string msg = error_of([&] { read_tensorboard_scalars(path); });
    EXPECT_NE(msg.find("truncated"), std::string::npos) << "cut=" << cut << ": " << msg;
  }
  spit(path, "");
  EXPECT_TRUE(read_tensorboard_scalars(path).empty());
}
