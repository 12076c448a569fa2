#pragma once
// Small POSIX file helpers with durable writes and errors that name the file.
#include <cstddef>
#include <cstdint>
#include <string>
#include <system_error>
#include <string_view>

namespace samba::io {

// Whole file as bytes; fails with the path and the OS reason if it is missing or unreadable.
std::string read_file(const std::string& path);

// Writes a file so that readers see either the old content or the complete new one, even
// across a crash: temp file in the same directory, fsync, rename over `path`, fsync the dir.
void write_file_atomic(const std::string& path, std::string_view bytes);

// The streaming form of write_file_atomic, for files too large to assemble in memory.
// Nothing becomes visible at `path` until commit(); destroying an uncommitted writer
// removes the temp file.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(const std::string& path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, size_t n);
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }
  uint64_t bytes_written() const { return written_; }
  void commit();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }

 private:
  std::string path_;
  std::string temp_path_;
  int fd_ = -1;
  uint64_t written_ = 0;
  bool committed_ = false;
};

// fsync a file (or directory) by path; fsync_dir makes a rename or create inside `dir` durable.
void fsync_path(const std::string& path);
void fsync_dir(const std::string& dir);

// Deletes a file or a directory tree (symlinks are removed, never followed); a missing path
// is not an error. Returns the number of entries removed. Use this instead of
// std::filesystem::remove_all: the torch 2.x wheel's libtorch.so exports its own copy of that
// symbol, which interposes libstdc++'s and crashes when called from our code.
uint64_t remove_tree(const std::string& path);
// Non-throwing form, like remove_all(path, ec).
void remove_tree(const std::string& path, std::error_code& ec) noexcept;

// CRC32C of a whole file, streamed in chunks, as 8 lowercase hex digits. Safetensors has no
// checksum of its own, so checkpoint manifests record this to detect silent corruption.
uint32_t file_crc32c(const std::string& path);
std::string file_crc32c_hex(const std::string& path);
std::string crc32c_hex(uint32_t crc);

// Read-only memory map of a whole file. Empty files are allowed (data() is then nullptr).
class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  std::string_view view() const {
    return {reinterpret_cast<const char*>(data_), size_};
  }

 private:
  void release();
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace samba::io
