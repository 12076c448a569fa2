#include "samba/data/shard.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "samba/core/error.h"
#include "samba/io/crc32c.h"

namespace samba::data {
namespace fs = std::filesystem;

namespace {

// Header layout (byte offsets). Kept explicit rather than a packed struct so the format does
// not depend on the compiler's padding or the host's endianness.
constexpr size_t kOffMagic = 0, kOffVersion = 8, kOffTokenBytes = 12, kOffVocab = 16, kOffEos = 20,
                 kOffTokens = 24, kOffDocs = 32, kOffPayloadCrc = 40, kOffHeaderCrc = 60;

void put_u32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void put_u64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t get_u32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(p[i]) << (8 * i);
  return v;
}
uint64_t get_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

void encode_header(const ShardHeader& h, uint8_t* out) {
  std::memset(out, 0, kShardHeaderBytes);
  std::memcpy(out + kOffMagic, kShardMagic, sizeof(kShardMagic));
  put_u32(out + kOffVersion, h.version);
  put_u32(out + kOffTokenBytes, h.token_bytes);
  put_u32(out + kOffVocab, h.vocab_size);
  put_u32(out + kOffEos, static_cast<uint32_t>(h.eos_id));
  put_u64(out + kOffTokens, h.token_count);
  put_u64(out + kOffDocs, h.document_count);
  put_u32(out + kOffPayloadCrc, h.payload_crc32c);
  put_u32(out + kOffHeaderCrc, io::crc32c(out, kOffHeaderCrc));
}

constexpr const char* kRegenerate = ". Fix: re-run `samba data` to regenerate the dataset";

}  // namespace

uint32_t token_bytes_for_vocab(uint32_t vocab_size) { return vocab_size <= 65535u ? 2 : 4; }

// ---------------------------------------------------------------------------------------------

ShardWriter::ShardWriter(std::string path, uint32_t vocab_size, int32_t eos_id)
    : path_(std::move(path)), tmp_path_(path_ + ".tmp") {
  check(vocab_size > 0, "shard '", path_, "': vocab size must be positive");
  check(eos_id >= 0 && static_cast<uint32_t>(eos_id) < vocab_size, "shard '", path_, "': eos id ", eos_id,
        " is outside the vocabulary of ", vocab_size);
  header_.vocab_size = vocab_size;
  header_.eos_id = eos_id;
  header_.token_bytes = token_bytes_for_vocab(vocab_size);
  fs::path parent = fs::path(path_).parent_path();
  if (!parent.empty()) fs::create_directories(parent);
  file_ = std::fopen(tmp_path_.c_str(), "wb");
  check(file_ != nullptr, "cannot create shard '", tmp_path_, "': ", std::strerror(errno));
  // Placeholder header; the real one needs the final counts and CRC.
  uint8_t zeros[kShardHeaderBytes] = {0};
  check(std::fwrite(zeros, 1, sizeof(zeros), file_) == sizeof(zeros), "cannot write shard '", tmp_path_,
        "': ", std::strerror(errno));
  buffer_.reserve(1 << 20);
}

ShardWriter::~ShardWriter() {
  if (file_ != nullptr) std::fclose(file_);
  if (!finished_) std::remove(tmp_path_.c_str());
}

void ShardWriter::add_document(const int32_t* tokens, size_t n) {
  check(!finished_, "shard '", path_, "': add_document after finish()");
  const uint32_t width = header_.token_bytes;
  auto append = [&](int32_t t) {
    uint8_t b[4];
    put_u32(b, static_cast<uint32_t>(t));
    buffer_.insert(buffer_.end(), b, b + width);
  };
  for (size_t i = 0; i < n; ++i) {
    const int32_t t = tokens[i];
    check(t >= 0 && static_cast<uint32_t>(t) < header_.vocab_size, "shard '", path_, "': token id ", t,
          " is outside the vocabulary of ", header_.vocab_size,
          " (the tokenizer and the declared vocab size disagree)");
    append(t);
  }
  append(header_.eos_id);
  header_.token_count += n + 1;
  header_.document_count += 1;
  if (buffer_.size() >= (1u << 20)) flush_buffer();
}

void ShardWriter::flush_buffer() {
  if (buffer_.empty()) return;
  header_.payload_crc32c = io::crc32c_extend(header_.payload_crc32c, buffer_.data(), buffer_.size());
  check(std::fwrite(buffer_.data(), 1, buffer_.size(), file_) == buffer_.size(), "cannot write shard '",
        tmp_path_, "': ", std::strerror(errno), " (disk full?)");
  buffer_.clear();
}

ShardHeader ShardWriter::finish() {
  check(!finished_, "shard '", path_, "': finish() called twice");
  flush_buffer();
  uint8_t head[kShardHeaderBytes];
  encode_header(header_, head);
  bool ok = std::fseek(file_, 0, SEEK_SET) == 0 && std::fwrite(head, 1, sizeof(head), file_) == sizeof(head) &&
            std::fflush(file_) == 0 && ::fsync(fileno(file_)) == 0;
  check(ok, "cannot finish shard '", tmp_path_, "': ", std::strerror(errno));
  std::fclose(file_);
  file_ = nullptr;
  std::error_code ec;
  fs::rename(tmp_path_, path_, ec);
  check(!ec, "cannot rename '", tmp_path_, "' to '", path_, "': ", ec.message());
  fs::path parent = fs::path(path_).parent_path();
  io::fsync_dir(parent.empty() ? std::string(".") : parent.string());
  finished_ = true;
  return header_;
}

// ---------------------------------------------------------------------------------------------

ShardReader::ShardReader(const std::string& path, ShardOpenOptions options) : path_(path) {
  std::error_code ec;
  check(fs::is_regular_file(path, ec), "token shard '", path, "' does not exist", kRegenerate);
  map_ = io::MappedFile(path);
  const uint8_t* p = map_.data();
  const size_t bytes = map_.size();
  check(bytes >= kShardHeaderBytes, "token shard '", path, "' is truncated: ", bytes,
        " bytes, smaller than the 64-byte header", kRegenerate);
  check(std::memcmp(p + kOffMagic, kShardMagic, sizeof(kShardMagic)) == 0, "'", path,
        "' is not a samba token shard (bad magic, expected \"SAMBATOK\")", kRegenerate);
  const uint32_t stored_header_crc = get_u32(p + kOffHeaderCrc);
  check(io::crc32c(p, kOffHeaderCrc) == stored_header_crc, "token shard '", path,
        "' has a corrupt header (header CRC mismatch)", kRegenerate);
  header_.version = get_u32(p + kOffVersion);
  check(header_.version == kShardVersion, "token shard '", path, "' has format version ", header_.version,
        " but this build reads version ", kShardVersion, kRegenerate);
  header_.token_bytes = get_u32(p + kOffTokenBytes);
  header_.vocab_size = get_u32(p + kOffVocab);
  header_.eos_id = static_cast<int32_t>(get_u32(p + kOffEos));
  header_.token_count = get_u64(p + kOffTokens);
  header_.document_count = get_u64(p + kOffDocs);
  header_.payload_crc32c = get_u32(p + kOffPayloadCrc);
  check(header_.token_bytes == 2 || header_.token_bytes == 4, "token shard '", path, "' declares ",
        header_.token_bytes, "-byte tokens (only 2 or 4 exist)", kRegenerate);
  const uint64_t expected = kShardHeaderBytes + header_.token_count * header_.token_bytes;
  check(bytes >= expected, "token shard '", path, "' is truncated: ", bytes, " bytes but the header promises ",
        header_.token_count, " tokens (", expected, " bytes); an interrupted copy?", kRegenerate);
  check(bytes == expected, "token shard '", path, "' has ", bytes - expected,
        " trailing bytes after its payload", kRegenerate);
  payload_ = p + kShardHeaderBytes;
  if (options.verify) {
    const uint32_t crc = io::crc32c(payload_, bytes - kShardHeaderBytes);
    check(crc == header_.payload_crc32c, "token shard '", path,
          "' is corrupt: payload CRC32C mismatch (bit flip on disk or in transfer)", kRegenerate);
  }
}

uint32_t ShardReader::Span::operator[](uint64_t i) const {
  const uint8_t* q = data + i * token_bytes;
  return token_bytes == 2 ? static_cast<uint32_t>(q[0] | (q[1] << 8)) : get_u32(q);
}

uint32_t ShardReader::token(uint64_t i) const {
  check(i < header_.token_count, "token index ", i, " is past the end of shard '", path_, "' (",
        header_.token_count, " tokens)");
  return span()[i];
}

void ShardReader::copy(uint64_t begin, uint64_t n, int32_t* out) const {
  check(begin + n <= header_.token_count, "token range [", begin, ", ", begin + n, ") is past the end of shard '",
        path_, "' (", header_.token_count, " tokens)");
  const Span s = span();
  if (s.token_bytes == 2) {
    const uint8_t* q = payload_ + begin * 2;
    for (uint64_t i = 0; i < n; ++i, q += 2) out[i] = static_cast<int32_t>(q[0] | (q[1] << 8));
  } else {
    const uint8_t* q = payload_ + begin * 4;
    for (uint64_t i = 0; i < n; ++i, q += 4) out[i] = static_cast<int32_t>(get_u32(q));
  }
}

}  // namespace samba::data
