#include "samba/ablate/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "samba/core/error.h"
#include "samba/io/files.h"

namespace samba::ablate {

namespace {

volatile sig_atomic_t g_stop = 0;
volatile pid_t g_child = 0;

void on_stop_signal(int) {
  // Pass the request on once: a second SIGTERM could make a trainer give up its checkpoint.
  if (!g_stop && g_child > 0) ::kill(g_child, SIGTERM);
  g_stop = 1;
}

void write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;  // the console went away: keep the child running, the log file still has it
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace

std::string ChildStatus::describe() const {
  return signaled ? "killed by signal " + std::to_string(signal) + " (" + strsignal(signal) + ")"
                  : "exit code " + std::to_string(exit_code);
}

void install_stop_handlers() {
  static std::atomic<bool> installed{false};
  if (installed.exchange(true)) return;
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: the output loop sees EINTR and keeps reading
  for (int s : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(s, &sa, nullptr);
}

bool stop_requested() { return g_stop != 0; }

ChildStatus run_child(const std::vector<std::string>& argv, const std::string& log_path, const std::string& prefix,
                      const std::string& pid_file) {
  check(!argv.empty(), "run_child: empty command");
  std::fflush(stdout);  // our own lines first: the child writes to the same console unbuffered
  std::ofstream log(log_path, std::ios::app);
  check(static_cast<bool>(log), "cannot append to ", log_path, ": ", std::strerror(errno));
  {
    std::string cmd;
    for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
    log << "$ " << cmd << "\n";
    log.flush();
  }
  int fds[2];
  check(::pipe(fds) == 0, "pipe: ", std::strerror(errno));
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  check(pid >= 0, "fork: ", std::strerror(errno));
  if (pid == 0) {
    // Own process group: a Ctrl-C on the terminal reaches only the runner, which passes one
    // SIGTERM on. Death of the runner (any cause) sends SIGTERM as well.
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(125);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    ::signal(SIGHUP, SIG_DFL);
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    ::execvp(cargv[0], cargv.data());  // PATH lookup for launchers
    std::fprintf(stderr, "cannot run %s: %s\n", cargv[0], std::strerror(errno));
    ::_exit(127);
  }
  g_child = pid;
  if (g_stop) ::kill(pid, SIGTERM);  // a signal arrived between the check and the fork
  ::close(fds[1]);
  if (!pid_file.empty()) io::write_file_atomic(pid_file, std::to_string(pid) + "\n");

  std::string pending;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    log.write(buf, n);
    log.flush();
    pending.append(buf, static_cast<size_t>(n));
    // Forward complete lines; progress bars redraw with '\r', treat it as a line end too.
    size_t start = 0;
    for (size_t i = 0; i < pending.size(); ++i) {
      if (pending[i] != '\n' && pending[i] != '\r') continue;
      if (i > start) {
        std::string line = prefix + pending.substr(start, i - start) + "\n";
        write_all(STDOUT_FILENO, line.data(), line.size());
      }
      start = i + 1;
    }
    pending.erase(0, start);
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  g_child = 0;
  if (!pid_file.empty()) ::unlink(pid_file.c_str());
  ChildStatus st;
  if (WIFSIGNALED(status)) {
    st.signaled = true;
    st.signal = WTERMSIG(status);
  } else {
    st.exit_code = WEXITSTATUS(status);
  }
  log << "# " << st.describe() << "\n";
  return st;
}

bool wait_for_stale_child(const std::string& pid_file, const std::string& marker, double timeout_s) {
  std::ifstream in(pid_file);
  long pid = 0;
  if (!(in >> pid) || pid <= 0) return true;
  const auto alive = [&] {
    std::ifstream cmd("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
    if (!cmd) return false;
    std::stringstream ss;
    ss << cmd.rdbuf();
    return ss.str().find(marker) != std::string::npos;
  };
  if (!alive()) return true;
  std::printf("[ablate] waiting for pid %ld, left running by an interrupted ablation, to checkpoint and exit\n", pid);
  std::fflush(stdout);
  // It already got SIGTERM when its runner died (PR_SET_PDEATHSIG): a second one is not sent.
  const auto start = std::chrono::steady_clock::now();
  while (alive()) {
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeout_s) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return true;
}

}  // namespace samba::ablate
