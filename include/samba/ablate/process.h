#pragma once
// Child processes for the ablation runner: output forwarded line by line to the console (with
// a prefix) and appended to a log file; SIGINT/SIGTERM/SIGHUP to the runner are passed on to
// the child as one SIGTERM (the trainer then checkpoints and exits), and a child whose runner
// dies (even by SIGKILL) gets SIGTERM too, so no trainer is left behind unattended.
#include <string>
#include <vector>

namespace samba::ablate {

struct ChildStatus {
  int exit_code = -1;  // valid when !signaled
  bool signaled = false;
  int signal = 0;
  bool ok() const { return !signaled && exit_code == 0; }
  std::string describe() const;  // "exit code 2", "killed by signal 9"
};

// Runs argv (argv[0] is the program path) and waits for it. `pid_file`, when given, holds the
// child's pid while it runs.
ChildStatus run_child(const std::vector<std::string>& argv, const std::string& log_path, const std::string& prefix,
                      const std::string& pid_file = "");

// Installs the runner's signal handlers (once).
void install_stop_handlers();
// True after SIGINT/SIGTERM/SIGHUP reached the runner.
bool stop_requested();

// Waits (up to timeout_s) for a process left by an earlier, killed runner: the pid in
// `pid_file` when it is still alive and its command line mentions `marker`. Returns false if
// it is still there after the timeout.
bool wait_for_stale_child(const std::string& pid_file, const std::string& marker, double timeout_s);

}  // namespace samba::ablate
