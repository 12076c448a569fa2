#pragma once
// Helpers for tests that drive the `samba` binary: running it, spawning ranks of a
// data-parallel run with a launcher's environment, reading metrics.jsonl, and a small
// synthetic corpus with structure to learn.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "multiprocess.h"  // free_port
#include "samba/io/files.h"

namespace samba::testing {
namespace fs = std::filesystem;

inline std::string samba_bin() {
  const char* b = std::getenv("SAMBA_BIN");
  return b ? b : "";
}

inline std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs a shell command, returns its exit status and fills `output` with stdout+stderr.
inline int run_cmd(const std::string& cmd, std::string* output = nullptr) {
  static int counter = 0;
  const fs::path out = fs::temp_directory_path() /
                       ("samba_cmd_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + ".txt");
  const int rc = std::system((cmd + " > " + out.string() + " 2>&1").c_str());
  if (output) *output = read_text(out);
  fs::remove(out);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// Starts `samba <args...>` in the background with extra environment variables; output to `log`.
inline pid_t spawn_samba(const std::vector<std::string>& args, const fs::path& log,
                         const std::map<std::string, std::string>& env = {}) {
  pid_t pid = ::fork();
  if (pid == 0) {
    // One open file description for both streams, so their writes interleave instead of
    // overwriting each other.
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::close(fd);
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    const std::string bin = samba_bin();
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(bin.c_str()));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(bin.c_str(), argv.data());
    std::_Exit(127);
  }
  return pid;
}

// torchrun's variables for rank r of `world` on one host.
inline std::map<std::string, std::string> torchrun_env(int rank, int world, int port) {
  return {{"RANK", std::to_string(rank)},        {"LOCAL_RANK", std::to_string(rank)},
          {"WORLD_SIZE", std::to_string(world)}, {"LOCAL_WORLD_SIZE", std::to_string(world)},
          {"MASTER_ADDR", "127.0.0.1"},          {"MASTER_PORT", std::to_string(port)}};
}

// step -> loss, the last value logged for each step.
inline std::map<int64_t, double> losses(const fs::path& run_dir) {
  std::map<int64_t, double> out;
  std::ifstream in(run_dir / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line);
    // A non-finite loss is written as null.
    if (j.contains("loss"))
      out[j["step"].get<int64_t>()] = j["loss"].is_number() ? j["loss"].get<double>() : std::nan("");
  }
  return out;
}

// Polls `cond` while child `pid` runs. Returns true once it holds; false on timeout or when
// the child exits first (then *status holds its wait status and the child is reaped).
inline bool wait_for(pid_t pid, const std::function<bool()>& cond, double timeout_s, int* status) {
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < timeout_s) {
    if (cond()) return true;
    if (::waitpid(pid, status, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// Waits up to timeout_s for `pid`; returns its wait status, or -1 (and kills it) on timeout.
inline int wait_exit(pid_t pid, double timeout_s) {
  int status = 0;
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < timeout_s) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return status;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return -1;
}

// A corpus from a toy grammar over a word list, prepared with `samba data` into dir/ds, and a
// tiny Samba model (dir/model.yaml) for it.
inline void make_tiny_dataset(const fs::path& dir) {
  fs::create_directories(dir / "corpus");
  std::mt19937 rng(7);
  const std::vector<std::string> nouns{"cat", "dog", "river", "house", "teacher", "city", "garden", "letter"};
  const std::vector<std::string> verbs{"sees", "finds", "follows", "writes", "opens", "likes"};
  const std::vector<std::string> adjs{"old", "small", "green", "quiet", "bright"};
  for (int d = 0; d < 60; ++d) {
    std::ofstream f(dir / "corpus" / ("doc" + std::to_string(d) + ".txt"));
    for (int s = 0; s < 40; ++s)
      f << "The " << adjs[rng() % adjs.size()] << " " << nouns[rng() % nouns.size()] << " "
        << verbs[rng() % verbs.size()] << " the " << nouns[rng() % nouns.size()] << ". ";
    f << "\n";
  }
  std::string out;
  ASSERT_EQ(run_cmd(samba_bin() + " data --input " + (dir / "corpus").string() + " --out " + (dir / "ds").string() +
                        " --vocab-size 320",
                    &out),
            0)
      << out;
  std::ofstream(dir / "model.yaml") << "include: " << SAMBA_SOURCE_DIR << "/configs/models/tiny-samba.yaml\n"
                                    << "vocab_size: 320\nd_model: 64\nseq_len: 32\nmlp_hidden: 128\n"
                                    << "attention: {n_heads: 2, n_kv_heads: 2, window: 16}\n";
}

}  // namespace samba::testing
