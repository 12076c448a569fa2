#pragma once
// Overflow-checked integer arithmetic for sizes computed from user input (seq_len x batch x
// accumulation, multiples of the training length, ...): a product that does not fit is an
// error naming what was multiplied, never a wrapped negative number.
#include <cstdint>
#include <optional>

namespace samba {

// a * b, or nullopt when it does not fit an int64.
inline std::optional<int64_t> checked_mul(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// a + b, or nullopt when it does not fit an int64.
inline std::optional<int64_t> checked_add(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

}  // namespace samba
