#pragma once
// Multi-process test helpers: free ports, forked ranks with a deadline, captured output.
//
// Ranks are fork()ed from the test process before it has touched torch (no torch threads
// exist yet, so the children start clean), each runs a body and reports through its exit
// status; the parent never blocks past a deadline, so a hung collective fails the test instead
// of hanging ctest.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace samba::testing {

// A TCP port that was free a moment ago: the kernel picks it (bind to port 0), so parallel
// tests do not collide on a fixed number.
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("bind/getsockname on 127.0.0.1:0 failed");
  }
  const int port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

// How one forked rank ended.
struct RankResult {
  int exit_code = -1;  // when it exited
  int signal = 0;      // when a signal killed it
  std::string output;  // its stdout + stderr
  bool ok() const { return signal == 0 && exit_code == 0; }
};

// A condition a rank checks; failing throws, which the rank reports and turns into exit 1.
inline void require(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("requirement failed: " + what);
}


// The launcher variables a test must not inherit (CI itself might run under SLURM or mpirun).
inline bool is_launcher_variable(const std::string& name) {
  for (const char* prefix : {"RANK=", "WORLD_SIZE=", "LOCAL_RANK=", "LOCAL_WORLD_SIZE=", "MASTER_ADDR=",
                             "MASTER_PORT=", "TORCHELASTIC_", "SLURM_", "OMPI_", "PMIX_", "GROUP_RANK="}) {
    if (name.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

// Starts `argv` with this process's environment minus launcher variables plus `env`
// ("NAME=value" entries), output to a temporary file; returns the pid and that file.
struct Spawned {
  pid_t pid = -1;
  std::string log;
};
inline Spawned spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  std::vector<std::string> vars;
  for (char** e = ::environ; *e != nullptr; ++e) {
    if (!is_launcher_variable(*e)) vars.emplace_back(*e);
  }
  vars.insert(vars.end(), env.begin(), env.end());
  char tmpl[] = "/tmp/samba_proc_XXXXXX";
  const int fd = ::mkstemp(tmpl);
  if (fd < 0) throw std::runtime_error("mkstemp failed");
  std::vector<char*> args, envp;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  for (const auto& v : vars) envp.push_back(const_cast<char*>(v.c_str()));
  envp.push_back(nullptr);
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::close(fd);
    ::execve(args[0], args.data(), envp.data());
    std::fprintf(stderr, "execve %s failed\n", args[0]);
    ::_exit(127);
  }
  ::close(fd);
  return {pid, tmpl};
}

// Waits for spawned processes (killing them after `deadline`) and collects their results.
inline std::vector<RankResult> wait_all(const std::vector<Spawned>& procs,
                                        std::chrono::seconds deadline = std::chrono::seconds(90)) {
  std::vector<RankResult> results(procs.size());
  std::vector<bool> done(procs.size(), false);
  size_t remaining = procs.size();
  const auto end = std::chrono::steady_clock::now() + deadline;
  while (remaining > 0) {
    for (size_t i = 0; i < procs.size(); ++i) {
      int status = 0;
      if (!done[i] && ::waitpid(procs[i].pid, &status, WNOHANG) == procs[i].pid) {
        done[i] = true;
        --remaining;
        if (WIFEXITED(status)) results[i].exit_code = WEXITSTATUS(status);
        if (WIFSIGNALED(status)) results[i].signal = WTERMSIG(status);
      }
    }
    if (remaining == 0) break;
    if (std::chrono::steady_clock::now() > end) {
      for (size_t i = 0; i < procs.size(); ++i) {
        if (done[i]) continue;
        ::kill(procs[i].pid, SIGKILL);
        ::waitpid(procs[i].pid, nullptr, 0);
        results[i].signal = SIGKILL;
        results[i].output = "[killed by the test: still running after the deadline]\n";
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (size_t i = 0; i < procs.size(); ++i) {
    std::ifstream in(procs[i].log);
    std::stringstream ss;
    ss << in.rdbuf();
    results[i].output += ss.str();
    std::remove(procs[i].log.c_str());
  }
  return results;
}

// Runs body(rank) in `world` forked processes and waits at most `deadline` for all of them
// (then kills the rest and marks them with SIGKILL). A rank exits 0 when its body returns.
inline std::vector<RankResult> run_ranks(int world, const std::function<void(int)>& body,
                                         std::chrono::seconds deadline = std::chrono::seconds(90)) {
  std::vector<pid_t> pids(world, -1);
  std::vector<std::string> logs(world);
  for (int r = 0; r < world; ++r) {
    char tmpl[] = "/tmp/samba_rank_XXXXXX";
    const int fd = ::mkstemp(tmpl);
    if (fd < 0) throw std::runtime_error("mkstemp failed");
    logs[r] = tmpl;
    std::fflush(stdout);
    std::fflush(stderr);
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::close(fd);
      int code = 0;
      try {
        body(r);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "rank %d: %s\n", r, e.what());
        code = 1;
      }
      std::fflush(stdout);
      std::fflush(stderr);
      ::_exit(code);  // no atexit handlers or static destructors of the parent's copy
    }
    ::close(fd);
    pids[r] = pid;
  }
  std::vector<Spawned> procs;
  for (int r = 0; r < world; ++r) procs.push_back({pids[r], logs[r]});
  return wait_all(procs, deadline);
}

// The message of what `fn` throws ("" when it does not).
template <typename Fn>
std::string error_text(Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

inline std::string describe(const std::vector<RankResult>& results) {
  std::ostringstream os;
  for (size_t r = 0; r < results.size(); ++r) {
    os << "--- rank " << r << ": exit " << results[r].exit_code << ", signal " << results[r].signal << "\n"
       << results[r].output;
  }
  return os.str();
}

}  // namespace samba::testing
