// The real launch path: `samba comm-check` (launch environment -> device -> communicator ->
// all-reduce) started the way each launcher starts training: torchrun-style and SLURM-style
// environments set by the test, torchrun's agent-served store, and OpenMPI through
// launch/mpirun.sh. Everything runs on 127.0.0.1 with Gloo.
#include <gtest/gtest.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cstdlib>
#include <string>
#include <vector>

#include "multiprocess.h"

using samba::testing::describe;
using samba::testing::free_port;
using samba::testing::RankResult;
using samba::testing::spawn;
using samba::testing::Spawned;
using samba::testing::wait_all;

namespace {

std::string samba_bin() {
  const char* b = std::getenv("SAMBA_BIN");
  return b ? b : "";
}

std::vector<std::string> comm_check() { return {samba_bin(), "comm-check", "--device", "cpu", "--timeout", "30"}; }

// Launches `world` comm-checks with per-rank environments and expects each to report the sum.
void expect_comm_check(int world, const std::function<std::vector<std::string>(int)>& env_of,
                       const std::string& launcher) {
  std::vector<Spawned> procs;
  for (int r = 0; r < world; ++r) procs.push_back(spawn(comm_check(), env_of(r)));
  const auto results = wait_all(procs, std::chrono::seconds(120));
  const std::string sum = "all-reduce " + std::to_string(world * (world + 1) / 2) + " ok";
  for (int r = 0; r < world; ++r) {
    ASSERT_TRUE(results[r].ok()) << describe(results);
    const std::string who = "rank " + std::to_string(r) + "/" + std::to_string(world);
    EXPECT_NE(results[r].output.find(who), std::string::npos) << describe(results);
    EXPECT_NE(results[r].output.find("via " + launcher), std::string::npos) << describe(results);
    EXPECT_NE(results[r].output.find(sum), std::string::npos) << describe(results);
    EXPECT_NE(results[r].output.find("rank 0 is rank 0/"), std::string::npos) << describe(results);
  }
}

// A free port p in [20000, 30000) and a SLURM job id that samba maps to it (20000 + id % 10000).
int slurm_job_for_free_port() {
  for (int attempt = 0; attempt < 200; ++attempt) {
    const int port = 20000 + (free_port() * 7919 + attempt * 104729) % 10000;
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    const bool free = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    ::close(fd);
    if (free) return 4'560'000 + (port - 20000);  // 4560000 % 10000 == 0
  }
  throw std::runtime_error("no free port in [20000, 30000)");
}

bool have_mpirun() { return std::system("command -v mpirun >/dev/null 2>&1") == 0; }

}  // namespace

TEST(Launch, TorchrunStyleEnvironment) {
  ASSERT_FALSE(samba_bin().empty()) << "SAMBA_BIN is not set (ctest sets it)";
  const int port = free_port();
  expect_comm_check(
      2,
      [port](int r) {
        return std::vector<std::string>{"RANK=" + std::to_string(r), "WORLD_SIZE=2",
                                        "LOCAL_RANK=" + std::to_string(r), "LOCAL_WORLD_SIZE=2",
                                        "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + std::to_string(port),
                                        "TORCHELASTIC_RUN_ID=test", "TORCHELASTIC_RESTART_COUNT=0"};
      },
      "torchrun");
}

// torchrun's c10d rendezvous serves the store itself (TORCHELASTIC_USE_AGENT_STORE=True): rank 0
// must connect as a client instead of binding the port, and a restart scopes its keys anew.
TEST(Launch, TorchrunAgentStore) {
  ASSERT_FALSE(samba_bin().empty());
  const int port = free_port();
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(port);
  so.isServer = true;
  so.waitWorkers = false;
  so.timeout = std::chrono::seconds(60);
  auto agent = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", so);  // plays torchrun's agent
  for (int attempt : {0, 1}) {
    expect_comm_check(
        2,
        [port, attempt](int r) {
          return std::vector<std::string>{"RANK=" + std::to_string(r), "WORLD_SIZE=2",
                                          "LOCAL_RANK=" + std::to_string(r), "LOCAL_WORLD_SIZE=2",
                                          "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + std::to_string(port),
                                          "TORCHELASTIC_RUN_ID=test", "TORCHELASTIC_USE_AGENT_STORE=True",
                                          "TORCHELASTIC_RESTART_COUNT=" + std::to_string(attempt)};
        },
        "torchrun");
  }
}

TEST(Launch, SlurmStyleEnvironment) {
  ASSERT_FALSE(samba_bin().empty());
  const int job = slurm_job_for_free_port();
  expect_comm_check(
      3,
      [job](int r) {
        // One node "localhost" in a compressed-looking list; 3 tasks of a larger allocation.
        return std::vector<std::string>{"SLURM_JOB_ID=" + std::to_string(job), "SLURM_PROCID=" + std::to_string(r),
                                        "SLURM_LOCALID=" + std::to_string(r), "SLURM_NODEID=0",
                                        "SLURM_NTASKS=8", "SLURM_STEP_NUM_TASKS=3", "SLURM_STEP_TASKS_PER_NODE=3",
                                        "SLURM_JOB_NODELIST=localhost", "SLURM_STEP_NODELIST=localhost"};
      },
      "slurm");
}

TEST(Launch, OpenMpiThroughTheLaunchScript) {
  ASSERT_FALSE(samba_bin().empty());
  if (!have_mpirun()) GTEST_SKIP() << "mpirun is not installed (apt-get install openmpi-bin)";
  const int port = free_port();
  const std::string script = std::string(SAMBA_SOURCE_DIR) + "/launch/mpirun.sh";
  // --oversubscribe: 2 ranks may exceed the cores OpenMPI counts on a small CI machine.
  auto proc = spawn({"/bin/bash", script, "comm-check", "--device", "cpu", "--timeout", "30"},
                    {"NP=2", "MPIRUN_ARGS=--oversubscribe", "SAMBA_BIN=" + samba_bin(),
                     "MASTER_PORT=" + std::to_string(port)});
  const auto results = wait_all({proc}, std::chrono::seconds(120));
  const auto& out = results[0].output;
  ASSERT_TRUE(results[0].ok()) << out;
  EXPECT_NE(out.find("rank 0/2 (local 0/2) via openmpi"), std::string::npos) << out;
  EXPECT_NE(out.find("rank 1/2 (local 1/2) via openmpi"), std::string::npos) << out;
  const auto first = out.find("all-reduce 3 ok");
  ASSERT_NE(first, std::string::npos) << out;
  EXPECT_NE(out.rfind("all-reduce 3 ok"), first) << "both ranks report the sum\n" << out;
}

TEST(Launch, InconsistentEnvironmentIsAClearError) {
  ASSERT_FALSE(samba_bin().empty());
  const auto results = wait_all({spawn(comm_check(), {"WORLD_SIZE=2"})}, std::chrono::seconds(60));
  EXPECT_EQ(results[0].exit_code, 2) << results[0].output;
  EXPECT_NE(results[0].output.find("WORLD_SIZE=2 is set but RANK is not"), std::string::npos) << results[0].output;
}

TEST(Launch, DeadRankEndsTheOtherProcess) {
  // Two torchrun-style ranks; rank 1 never starts (as if it crashed before the rendezvous):
  // rank 0 must give up within its timeout with an error, not wait forever.
  ASSERT_FALSE(samba_bin().empty());
  const int port = free_port();
  auto proc = spawn({samba_bin(), "comm-check", "--device", "cpu", "--timeout", "2"},
                    {"RANK=0", "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + std::to_string(port)});
  const auto start = std::chrono::steady_clock::now();
  const auto results = wait_all({proc}, std::chrono::seconds(60));
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(results[0].exit_code, 2) << results[0].output;
  // Where it gives up (the store or the group's connection) depends on timing; both say so.
  EXPECT_NE(results[0].output.find("failed on rank 0/2"), std::string::npos) << results[0].output;
  EXPECT_NE(results[0].output.find("127.0.0.1:" + std::to_string(port)), std::string::npos) << results[0].output;
  EXPECT_NE(results[0].output.find("within the timeout"), std::string::npos) << results[0].output;
  EXPECT_LT(took, 30) << results[0].output;
}
