#pragma once
// Run-directory guards (torch-free building blocks for the trainer):
//
//   RunLock lock = RunLock::acquire(cfg.run_dir, "samba train " + recipe);
//       Creates run_dir if needed (a clear error on a read-only or unwritable location) and
//       takes an exclusive advisory lock (flock) on run_dir/.samba.lock for the life of the
//       object. The file records the holder (pid, host, start time, command). A second
//       process is refused with an Error naming the holder. flock locks die with their
//       process, so the lock of a killed run (SIGKILL, power loss) is taken over; previous()
//       then describes that dead holder so the caller can log it. Take it in the one process
//       that writes the run directory (rank 0 of a data-parallel run), before writing anything.
//
//   RunDirContents c = inspect_run_dir(cfg.run_dir);
//       What an older run left there (checkpoints, metrics.jsonl, train.log, tb/ events).
//       c.holds_run() is the "fresh run into a non-empty directory" test;
//       check_fresh_run_dir(run_dir) throws the standard refusal (suggesting --resume,
//       --overwrite or a new run_dir) when it is true.
#include <optional>
#include <string>
#include <vector>

namespace samba::io {

struct LockHolder {
  long pid = 0;
  std::string host;
  std::string started;  // UTC, ISO 8601
  std::string command;
  std::string describe() const;  // "pid 123 on host1 since 2026-...Z (samba train x.yaml)"
};

class RunLock {
 public:
  static RunLock acquire(const std::string& run_dir, const std::string& command);
  RunLock(RunLock&& other) noexcept;
  RunLock& operator=(RunLock&& other) noexcept;
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;
  ~RunLock();

  const std::string& path() const { return path_; }
  // The holder recorded in the lock file when it was taken over (a process that is gone).
  const std::optional<LockHolder>& previous() const { return previous_; }
  // Releases early (the destructor does it otherwise); the file stays, unlocked.
  void release();

 private:
  RunLock() = default;
  std::string path_;
  int fd_ = -1;
  std::optional<LockHolder> previous_;
};

// The holder recorded in a lock file, or nullopt if it is missing or unreadable.
std::optional<LockHolder> read_lock_holder(const std::string& lock_path);
// run_dir/.samba.lock
std::string lock_path(const std::string& run_dir);

struct RunDirContents {
  bool exists = false;
  std::vector<std::string> found;  // what marks an older run, e.g. "checkpoints/step_00000020", "metrics.jsonl (35 lines)"
  bool holds_run() const { return !found.empty(); }
  std::string describe() const;  // comma-separated `found`
};

RunDirContents inspect_run_dir(const std::string& run_dir);
// Throws samba::Error when run_dir holds an older run: "run directory 'runs/x' already holds a
// run (checkpoints/step_00000020, ...): pass --resume to continue it, --overwrite to replace it,
// or choose a new run_dir".
void check_fresh_run_dir(const std::string& run_dir);

}  // namespace samba::io
