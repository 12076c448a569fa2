#include <gtest/gtest.h>

#include <chrono>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "samba/io/crc32c.h"

using namespace samba::io;

TEST(Crc32c, KnownVectors) {
  const std::string digits = "123456789";
  EXPECT_EQ(crc32c(digits.data(), digits.size()), 0xE3069283u);
  std::vector<unsigned char> zeros(32, 0x00), ones(32, 0xFF), inc(32), dec(32);
  for (int i = 0; i < 32; ++i) {
    inc[i] = static_cast<unsigned char>(i);
    dec[i] = static_cast<unsigned char>(31 - i);
  }
  // RFC 3720 (iSCSI) appendix B.4 test vectors.
  EXPECT_EQ(crc32c(zeros.data(), 32), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones.data(), 32), 0x62A8AB43u);
  EXPECT_EQ(crc32c(inc.data(), 32), 0x46DD794Eu);
  EXPECT_EQ(crc32c(dec.data(), 32), 0x113FDB5Cu);
  EXPECT_EQ(crc32c(nullptr, 0), 0u);
}

TEST(Crc32c, PortableMatchesDispatchedOnRandomData) {
  std::mt19937 rng(7);
  std::vector<unsigned char> buf(4099);
  for (auto& b : buf) b = static_cast<unsigned char>(rng());
  // Every length 0..64 and misaligned starts exercise the 8-byte loop and the byte tail.
  for (size_t start = 0; start < 8; ++start)
    for (size_t n = 0; n <= 64; ++n)
      ASSERT_EQ(crc32c(buf.data() + start, n), detail::crc32c_extend_portable(0, buf.data() + start, n))
          << "start=" << start << " n=" << n;
  EXPECT_EQ(crc32c(buf.data(), buf.size()), detail::crc32c_extend_portable(0, buf.data(), buf.size()));
  std::cout << "hardware crc32c: " << (detail::crc32c_has_hardware() ? "yes" : "no") << "\n";
}

TEST(Crc32c, ExtendEqualsWhole) {
  std::mt19937 rng(11);
  std::vector<unsigned char> buf(1000);
  for (auto& b : buf) b = static_cast<unsigned char>(rng());
  const uint32_t whole = crc32c(buf.data(), buf.size());
  for (size_t cut : {0u, 1u, 7u, 8u, 9u, 500u, 999u, 1000u}) {
    uint32_t c = crc32c_extend(crc32c(buf.data(), cut), buf.data() + cut, buf.size() - cut);
    EXPECT_EQ(c, whole) << "cut=" << cut;
  }
  // A single flipped bit must change the checksum.
  buf[123] ^= 0x10;
  EXPECT_NE(crc32c(buf.data(), buf.size()), whole);
}

TEST(Crc32c, Masked) {
  // The mask is rotate-right-by-15 plus a constant, as TFRecord defines it.
  EXPECT_EQ(masked_crc32c(0u), 0xa282ead8u);
  const uint32_t c = 0xE3069283u;
  EXPECT_EQ(masked_crc32c(c), ((c >> 15) | (c << 17)) + 0xa282ead8u);
  EXPECT_NE(masked_crc32c(c), c);
}

TEST(Crc32c, Throughput) {
  std::vector<unsigned char> buf(64 << 20, 0x5a);
  auto t0 = std::chrono::steady_clock::now();
  volatile uint32_t c = crc32c(buf.data(), buf.size());
  double fast = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  t0 = std::chrono::steady_clock::now();
  volatile uint32_t p = detail::crc32c_extend_portable(0, buf.data(), buf.size());
  double slow = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(c, p);
  std::cout << "crc32c 64 MiB: dispatched " << 64 / fast << " MiB/s, slice-by-8 " << 64 / slow
            << " MiB/s\n";
  // Loose floor: even the table path should clear 100 MiB/s; a byte-at-a-time bug would not.
  EXPECT_GT(64 / slow, 100.0);
}
