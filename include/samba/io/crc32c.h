#pragma once
// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): the checksum TFRecord/TensorBoard
// framing uses, and the one we record for data shards and checkpoint files.
#include <cstddef>
#include <cstdint>

namespace samba::io {

// Continues a CRC over more bytes: crc32c_extend(crc32c(a), b) == crc32c(a + b).
// Start from 0 for a fresh checksum. Uses the SSE4.2 crc32 instruction when the CPU has it
// and a slice-by-8 table otherwise.
uint32_t crc32c_extend(uint32_t crc, const void* data, size_t n);

inline uint32_t crc32c(const void* data, size_t n) { return crc32c_extend(0, data, n); }

// TFRecord stores checksums rotated and offset, because a CRC over data that itself
// contains CRCs is weak; readers apply the same transform before comparing.
inline uint32_t masked_crc32c(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

namespace detail {
// The table-driven path alone, so tests can check it against the hardware path.
uint32_t crc32c_extend_portable(uint32_t crc, const void* data, size_t n);
// True when crc32c_extend dispatches to the hardware instruction on this machine.
bool crc32c_has_hardware();
}  // namespace detail

}  // namespace samba::io
