#include "samba/io/run_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "samba/core/error.h"

namespace samba::io {
namespace fs = std::filesystem;

namespace {

std::string hostname() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown-host";
  return buf;
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// A hint for the errors that mean "this place cannot be written", which otherwise surface as
// a bare "filesystem error" from deep inside the first write.
std::string unwritable_hint(int err) {
  if (err == EROFS) return "; the filesystem is read-only: choose a run_dir on a writable disk";
  if (err == EACCES || err == EPERM) return "; you may not write there: choose a run_dir you own";
  if (err == ENOSPC || err == EDQUOT) return "; the disk is full: free space or choose another run_dir";
  return "; check the path and permissions";
}

std::string read_fd(int fd) {
  std::string out;
  char buf[4096];
  off_t off = 0;
  while (out.size() < (1 << 16)) {
    ssize_t r = ::pread(fd, buf, sizeof buf, off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    out.append(buf, static_cast<size_t>(r));
    off += r;
  }
  return out;
}

std::optional<LockHolder> parse_holder(const std::string& text) {
  if (text.empty()) return std::nullopt;
  try {
    auto j = nlohmann::json::parse(text);
    LockHolder h;
    h.pid = j.at("pid").get<long>();
    h.host = j.value("host", "");
    h.started = j.value("started", "");
    h.command = j.value("command", "");
    return h;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

std::string LockHolder::describe() const {
  std::string s = "pid " + std::to_string(pid) + " on " + (host.empty() ? "an unknown host" : host);
  if (!started.empty()) s += " since " + started;
  if (!command.empty()) s += " (" + command + ")";
  return s;
}

std::string lock_path(const std::string& run_dir) { return (fs::path(run_dir) / ".samba.lock").string(); }

std::optional<LockHolder> read_lock_holder(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return parse_holder(text);
}

RunLock RunLock::acquire(const std::string& run_dir, const std::string& command) {
  check(!run_dir.empty(), "run_dir is empty; give the directory for checkpoints and logs");
  std::error_code ec;
  fs::create_directories(run_dir, ec);
  if (ec)
    fail("cannot create run directory '", run_dir, "': ", ec.message(), unwritable_hint(ec.value()));
  if (!fs::is_directory(run_dir, ec))
    fail("run directory '", run_dir, "' exists but is not a directory; choose another run_dir");

  RunLock lock;
  lock.path_ = lock_path(run_dir);
  int fd;
  do {
    fd = ::open(lock.path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    const int err = errno;
    fail("run directory '", run_dir, "' is not writable (cannot create ", lock.path_, ": ", std::strerror(err), ")",
         unwritable_hint(err));
  }
  lock.fd_ = fd;  // closed by ~RunLock on every path below
  int rc;
  do {
    rc = ::flock(fd, LOCK_EX | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int err = errno;
    if (err == EWOULDBLOCK) {
      auto holder = parse_holder(read_fd(fd));
      fail("run directory '", run_dir, "' is in use by another samba process: ",
           holder ? holder->describe() : std::string("its lock file ") + lock.path_ + " names no holder yet",
           ". Two runs in one directory would mix their checkpoints and metrics; wait for it to finish, "
           "stop it, or choose another run_dir");
    }
    fail("cannot lock '", lock.path_, "': ", std::strerror(err),
         " (the filesystem may not support file locks); choose a run_dir on a local disk");
  }
  // A clean release empties the file, so a holder still recorded here died without releasing
  // (killed, crashed): its lock went with its process and is taken over.
  lock.previous_ = parse_holder(read_fd(fd));

  nlohmann::json j = {{"pid", static_cast<long>(::getpid())}, {"host", hostname()}, {"started", utc_now()},
                      {"command", command}};
  const std::string text = j.dump() + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    const int err = errno;
    fail("cannot write the lock file ", lock.path_, ": ", std::strerror(err), unwritable_hint(err));
  }
  return lock;
}

RunLock::RunLock(RunLock&& other) noexcept
    : path_(std::move(other.path_)), fd_(other.fd_), previous_(std::move(other.previous_)) {
  other.fd_ = -1;
}

RunLock& RunLock::operator=(RunLock&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    fd_ = other.fd_;
    previous_ = std::move(other.previous_);
    other.fd_ = -1;
  }
  return *this;
}

RunLock::~RunLock() { release(); }

void RunLock::release() {
  if (fd_ < 0) return;
  // Empty the file first: a holder left in it means "died holding the lock" (see acquire).
  if (::ftruncate(fd_, 0) != 0) {
    // Nothing to do: the next acquire then reports this process as a dead previous holder.
  }
  ::close(fd_);  // drops the flock
  fd_ = -1;
}

std::string RunDirContents::describe() const {
  std::string s;
  for (const auto& f : found) s += (s.empty() ? "" : ", ") + f;
  return s;
}

RunDirContents inspect_run_dir(const std::string& run_dir) {
  RunDirContents c;
  std::error_code ec;
  c.exists = fs::is_directory(run_dir, ec);
  if (!c.exists) return c;
  const fs::path root(run_dir);

  std::vector<std::string> steps;
  size_t other = 0;
  for (fs::directory_iterator it(root / "checkpoints", ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind("step_", 0) == 0) steps.push_back(name);
    else ++other;
  }
  std::sort(steps.begin(), steps.end());
  if (!steps.empty())
    c.found.push_back("checkpoints/ with " + std::to_string(steps.size()) + " checkpoint(s), newest " + steps.back());
  else if (other > 0)
    c.found.push_back("checkpoints/ with " + std::to_string(other) + " partial or temporary entr" +
                      (other == 1 ? "y" : "ies"));

  const fs::path metrics = root / "metrics.jsonl";
  if (fs::is_regular_file(metrics, ec) && fs::file_size(metrics, ec) > 0) {
    std::ifstream in(metrics, std::ios::binary);
    const auto lines = std::count(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>(), '\n');
    c.found.push_back("metrics.jsonl (" + std::to_string(lines) + " lines)");
  }
  const fs::path log = root / "train.log";
  if (fs::is_regular_file(log, ec) && fs::file_size(log, ec) > 0) c.found.push_back("train.log");
  const fs::path tb = root / "tb";
  if (fs::is_directory(tb, ec) && fs::directory_iterator(tb, ec) != fs::directory_iterator())
    c.found.push_back("tb/ (TensorBoard events)");
  return c;
}

void check_fresh_run_dir(const std::string& run_dir) {
  const RunDirContents c = inspect_run_dir(run_dir);
  if (!c.holds_run()) return;
  fail("run directory '", run_dir, "' already holds a run (", c.describe(),
       "). A fresh run there would mix its checkpoints with the old ones; pass --resume to continue it, "
       "--overwrite to replace it, or choose a new run_dir");
}

}  // namespace samba::io
