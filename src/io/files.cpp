#include "samba/io/files.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "samba/core/error.h"
#include "samba/io/crc32c.h"

#include <ftw.h>

namespace samba::io {
namespace {

std::string os_reason() { return std::strerror(errno); }

int open_or_fail(const std::string& path, int flags, const char* purpose) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0)
    fail("cannot open '", path, "' for ", purpose, ": ", os_reason(),
         "; check that the path exists and is accessible");
  return fd;
}

void write_all(int fd, const void* data, size_t n, const std::string& path) {
  auto* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("write to '", path, "' failed: ", os_reason(), "; check free disk space and quotas");
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void fsync_fd(int fd, const std::string& path) {
  if (::fsync(fd) != 0 && errno != EINVAL)  // EINVAL: the filesystem cannot sync (e.g. a pipe)
    fail("fsync of '", path, "' failed: ", os_reason(), "; the data may not be on disk");
}

std::string parent_dir(const std::string& path) {
  auto parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

}  // namespace

std::string read_file(const std::string& path) {
  int fd = open_or_fail(path, O_RDONLY, "reading");
  std::string out;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && st.st_size > 0) out.reserve(static_cast<size_t>(st.st_size));
  std::vector<char> buf(1 << 16);
  while (true) {
    ssize_t r = ::read(fd, buf.data(), buf.size());
    if (r < 0) {
      if (errno == EINTR) continue;
      int saved = errno;
      ::close(fd);
      errno = saved;
      fail("cannot read '", path, "': ", os_reason(), " (is it a directory?)");
    }
    if (r == 0) break;
    out.append(buf.data(), static_cast<size_t>(r));
  }
  ::close(fd);
  return out;
}

AtomicFileWriter::AtomicFileWriter(const std::string& path) : path_(path) {
  check(!path.empty(), "AtomicFileWriter: empty output path; pass the file to write");
  // pid + counter keeps concurrent writers (threads or ranks on a shared FS) apart; the
  // leading dot hides half-written files from globs like *.safetensors.
  static std::atomic<uint64_t> counter{0};
  auto p = std::filesystem::path(path);
  temp_path_ = (p.parent_path() / ("." + p.filename().string() + ".tmp." +
                                   std::to_string(::getpid()) + "." +
                                   std::to_string(counter.fetch_add(1))))
                   .string();
  int fd;
  do {
    fd = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0)
    fail("cannot create '", temp_path_, "' to write '", path, "': ", os_reason(),
         "; check that the directory '", parent_dir(path), "' exists and is writable");
  fd_ = fd;
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_path_.c_str());
}

void AtomicFileWriter::write(const void* data, size_t n) {
  check(fd_ >= 0 && !committed_, "AtomicFileWriter for '", path_, "': write after commit");
  write_all(fd_, data, n, temp_path_);
  written_ += n;
}

void AtomicFileWriter::commit() {
  check(fd_ >= 0 && !committed_, "AtomicFileWriter for '", path_, "': commit called twice");
  fsync_fd(fd_, temp_path_);
  int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) fail("closing '", temp_path_, "' failed: ", os_reason(), "; the write is lost");
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0)
    fail("cannot rename '", temp_path_, "' to '", path_, "': ", os_reason(),
         "; if the target is a directory, remove it or pick another path");
  committed_ = true;
  fsync_dir(parent_dir(path_));
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  AtomicFileWriter w(path);
  w.write(bytes);
  w.commit();
}

namespace {
// Opens `path` with `flags`, fsyncs it and closes it, also when the fsync fails.
void fsync_opened(const std::string& path, int flags, const char* purpose) {
  int fd = open_or_fail(path, flags, purpose);
  try {
    fsync_fd(fd, path);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
}
}  // namespace

void fsync_path(const std::string& path) { fsync_opened(path, O_RDONLY, "fsync"); }

void fsync_dir(const std::string& dir) {
  fsync_opened(dir.empty() ? "." : dir, O_RDONLY | O_DIRECTORY, "fsync of directory");
}

uint32_t file_crc32c(const std::string& path) {
  int fd = open_or_fail(path, O_RDONLY, "checksumming");
  std::vector<char> buf(1 << 20);
  uint32_t crc = 0;
  while (true) {
    ssize_t r = ::read(fd, buf.data(), buf.size());
    if (r < 0) {
      if (errno == EINTR) continue;
      int saved = errno;
      ::close(fd);
      errno = saved;
      fail("cannot read '", path, "' for its checksum: ", os_reason());
    }
    if (r == 0) break;
    crc = crc32c_extend(crc, buf.data(), static_cast<size_t>(r));
  }
  ::close(fd);
  return crc;
}

std::string crc32c_hex(uint32_t crc) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", crc);
  return buf;
}

std::string file_crc32c_hex(const std::string& path) { return crc32c_hex(file_crc32c(path)); }

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd = open_or_fail(path, O_RDONLY, "memory mapping");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int saved = errno;
    ::close(fd);
    errno = saved;
    fail("cannot stat '", path, "': ", os_reason());
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("cannot map '", path, "': not a regular file; pass a file, not a directory or device");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int saved = errno;
      ::close(fd);
      errno = saved;
      fail("cannot mmap '", path, "' (", size_, " bytes): ", os_reason());
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping keeps the file alive on its own
}

MappedFile::~MappedFile() { release(); }

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)), data_(other.data_), size_(other.size_) {
  other.data_ = nullptr;
  other.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    data_ = other.data_;
    size_ = other.size_;
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

void MappedFile::release() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

namespace {
uint64_t g_removed = 0;
int remove_entry(const char* path, const struct stat*, int type, struct FTW*) {
  const int rc = (type == FTW_DP) ? ::rmdir(path) : ::unlink(path);
  if (rc != 0 && errno != ENOENT) return errno;
  ++g_removed;
  return 0;
}
}  // namespace

uint64_t remove_tree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return 0;
    fail("cannot delete '", path, "': ", std::strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) fail("cannot delete '", path, "': ", std::strerror(errno));
    return 1;
  }
  // nftw is not reentrant across threads for our counter; deletions are rare and serial.
  g_removed = 0;
  const int rc = ::nftw(path.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  if (rc != 0) fail("cannot delete '", path, "': ", std::strerror(rc > 0 ? rc : errno));
  return g_removed;
}

void remove_tree(const std::string& path, std::error_code& ec) noexcept {
  ec.clear();
  try {
    remove_tree(path);
  } catch (const std::exception&) {
    ec = std::error_code(errno != 0 ? errno : EIO, std::generic_category());
  }
}

}  // namespace samba::io
