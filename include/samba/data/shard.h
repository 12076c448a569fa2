#pragma once
// Binary token shards (format in docs/FORMATS.md, "Token shards"): a 64-byte little-endian
// header followed by the token payload, uint16 when the vocabulary fits, uint32 otherwise.
// Documents are stored back to back, each followed by the EOS id.
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "samba/io/files.h"

namespace samba::data {

constexpr char kShardMagic[8] = {'S', 'A', 'M', 'B', 'A', 'T', 'O', 'K'};
constexpr uint32_t kShardVersion = 1;
constexpr size_t kShardHeaderBytes = 64;

struct ShardHeader {
  uint32_t version = kShardVersion;
  uint32_t token_bytes = 2;  // 2 (uint16) or 4 (uint32)
  uint32_t vocab_size = 0;
  int32_t eos_id = -1;
  uint64_t token_count = 0;
  uint64_t document_count = 0;
  uint32_t payload_crc32c = 0;
};

// 2 when every id of a `vocab_size` vocabulary fits in uint16, else 4.
uint32_t token_bytes_for_vocab(uint32_t vocab_size);

// Streams documents into `<path>.tmp`, then finish() writes the header, fsyncs and renames it
// into place, so a crash never leaves a file at `path` that looks complete.
class ShardWriter {
 public:
  ShardWriter(std::string path, uint32_t vocab_size, int32_t eos_id);
  ~ShardWriter();  // removes the temp file when finish() was never reached
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Appends `tokens` and then the EOS id. Ids outside [0, vocab_size) are an error.
  void add_document(const int32_t* tokens, size_t n);
  void add_document(const std::vector<int32_t>& tokens) { add_document(tokens.data(), tokens.size()); }

  ShardHeader finish();
  const ShardHeader& header() const { return header_; }
  const std::string& path() const { return path_; }

 private:
  void flush_buffer();

  std::string path_, tmp_path_;
  std::FILE* file_ = nullptr;
  ShardHeader header_;
  std::vector<uint8_t> buffer_;
  bool finished_ = false;
};

struct ShardOpenOptions {
  bool verify = true;  // check the payload CRC (reads the whole file once)
};

// Read-only mmap of a shard. Validates magic, version, header CRC, file size against the
// header's token count, and (with verify) the payload CRC; errors name the file and say how
// to regenerate it.
class ShardReader {
 public:
  explicit ShardReader(const std::string& path, ShardOpenOptions options = {});
  ShardReader(const ShardReader&) = delete;
  ShardReader& operator=(const ShardReader&) = delete;

  const ShardHeader& header() const { return header_; }
  const std::string& path() const { return path_; }
  uint64_t size() const { return header_.token_count; }

  uint32_t token(uint64_t i) const;
  // Copies tokens [begin, begin + n) widened to int32.
  void copy(uint64_t begin, uint64_t n, int32_t* out) const;

  // The raw payload; the element width is header().token_bytes.
  struct Span {
    const uint8_t* data;
    uint64_t size;  // in tokens
    uint32_t token_bytes;
    uint32_t operator[](uint64_t i) const;
  };
  Span span() const { return {payload_, header_.token_count, header_.token_bytes}; }

 private:
  std::string path_;
  ShardHeader header_;
  io::MappedFile map_;
  const uint8_t* payload_ = nullptr;
};

}  // namespace samba::data
