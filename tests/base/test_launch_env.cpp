#include <gtest/gtest.h>

#include <map>
#include <string>

#include "io_test_util.h"
#include "samba/runtime/launch_env.h"

using samba::runtime::detect_launch_env;
using samba::runtime::LaunchEnv;
using samba::testing::error_of;

namespace {

// A fake process environment: detect_launch_env reads only through the getter.
using Vars = std::map<std::string, std::string>;

LaunchEnv detect(const Vars& vars) {
  return detect_launch_env([&vars](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

std::string error_for(const Vars& vars) {
  return error_of([&] { detect(vars); });
}

Vars torchrun(int rank, int world, int local_rank, int local_world) {
  return {{"RANK", std::to_string(rank)},
          {"WORLD_SIZE", std::to_string(world)},
          {"LOCAL_RANK", std::to_string(local_rank)},
          {"LOCAL_WORLD_SIZE", std::to_string(local_world)},
          {"MASTER_ADDR", "10.1.2.3"},
          {"MASTER_PORT", "29511"},
          {"TORCHELASTIC_RUN_ID", "job"},
          {"TORCHELASTIC_RESTART_COUNT", "2"}};
}

Vars slurm(int procid, int ntasks, int localid, const std::string& tasks_per_node, const std::string& nodelist) {
  return {{"SLURM_PROCID", std::to_string(procid)}, {"SLURM_NTASKS", std::to_string(ntasks)},
          {"SLURM_LOCALID", std::to_string(localid)}, {"SLURM_TASKS_PER_NODE", tasks_per_node},
          {"SLURM_JOB_NODELIST", nodelist},          {"SLURM_JOB_ID", "1234567"}};
}

Vars openmpi(int rank, int size, int local_rank, int local_size) {
  return {{"OMPI_COMM_WORLD_RANK", std::to_string(rank)},
          {"OMPI_COMM_WORLD_SIZE", std::to_string(size)},
          {"OMPI_COMM_WORLD_LOCAL_RANK", std::to_string(local_rank)},
          {"OMPI_COMM_WORLD_LOCAL_SIZE", std::to_string(local_size)}};
}

Vars with(Vars base, const Vars& extra) {
  for (const auto& [k, v] : extra) base[k] = v;
  return base;
}

}  // namespace

TEST(LaunchEnv, NoLauncherIsOneProcess) {
  const auto env = detect({});
  EXPECT_EQ(env.launcher, "single");
  EXPECT_EQ(env.rank, 0);
  EXPECT_EQ(env.world, 1);
  EXPECT_EQ(env.local_rank, 0);
  EXPECT_FALSE(env.distributed());
  // An empty value counts as unset (shells export VAR= to clear).
  EXPECT_EQ(detect({{"RANK", ""}, {"WORLD_SIZE", ""}}).launcher, "single");
}

TEST(LaunchEnv, Torchrun) {
  const auto env = detect(torchrun(5, 8, 1, 4));
  EXPECT_EQ(env.launcher, "torchrun");
  EXPECT_EQ(env.rank, 5);
  EXPECT_EQ(env.world, 8);
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.local_world, 4);
  EXPECT_EQ(env.master_addr, "10.1.2.3");
  EXPECT_EQ(env.master_port, 29511);
  EXPECT_EQ(env.restart_count, 2);
  EXPECT_TRUE(env.distributed());
  EXPECT_EQ(env.describe(), "rank 5/8 (local 1/4) via torchrun, master 10.1.2.3:29511, restart 2");
}

TEST(LaunchEnv, TorchrunAgentStore) {
  EXPECT_FALSE(detect(torchrun(0, 2, 0, 2)).agent_store);
  EXPECT_TRUE(detect(with(torchrun(0, 2, 0, 2), {{"TORCHELASTIC_USE_AGENT_STORE", "True"}})).agent_store);
  EXPECT_FALSE(detect(with(torchrun(0, 2, 0, 2), {{"TORCHELASTIC_USE_AGENT_STORE", "False"}})).agent_store);
  // Only torchrun's agent serves a store.
  EXPECT_FALSE(detect(with(openmpi(0, 2, 0, 2), {{"TORCHELASTIC_USE_AGENT_STORE", "True"}})).agent_store);
}

TEST(LaunchEnv, EnvConventionWithoutLocalVariablesAssumesOneNode) {
  const auto env = detect({{"RANK", "2"}, {"WORLD_SIZE", "3"}});
  EXPECT_EQ(env.launcher, "torchrun");
  EXPECT_EQ(env.local_rank, 2);
  EXPECT_EQ(env.local_world, 3);
  EXPECT_EQ(env.master_addr, "127.0.0.1");
  EXPECT_EQ(env.master_port, 29500);
  // With only the node size, ranks fill nodes in order.
  EXPECT_EQ(detect({{"RANK", "5"}, {"WORLD_SIZE", "8"}, {"LOCAL_WORLD_SIZE", "4"}}).local_rank, 1);
}

TEST(LaunchEnv, SlurmFirstHostAndJobPort) {
  const auto env = detect(slurm(5, 6, 1, "4,2", "gpu[01-04,07],cpu5"));
  EXPECT_EQ(env.launcher, "slurm");
  EXPECT_EQ(env.rank, 5);
  EXPECT_EQ(env.world, 6);
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.local_world, 4);  // SLURM_NODEID unset: node 0
  EXPECT_EQ(env.master_addr, "gpu01");
  const int port = env.master_port;
  EXPECT_GE(port, 20000);
  EXPECT_LT(port, 30000);  // below the ephemeral range
  EXPECT_EQ(port, 20000 + 1234567 % 10000);
  // Another job gets another port.
  EXPECT_NE(detect(with(slurm(0, 2, 0, "2", "n1"), {{"SLURM_JOB_ID", "1234568"}})).master_port, port);
}

TEST(LaunchEnv, SlurmNodeListForms) {
  auto host = [](const std::string& list) { return detect(slurm(0, 2, 0, "2", list)).master_addr; };
  EXPECT_EQ(host("node7"), "node7");
  EXPECT_EQ(host("a,b,c"), "a");
  EXPECT_EQ(host("gpu[07]"), "gpu07");
  EXPECT_EQ(host("rack1-[3-4]-ib,rack2-[1-2]-ib"), "rack1-3-ib");
  EXPECT_EQ(host("gpu[009,011-012]"), "gpu009");
  EXPECT_NE(error_for(slurm(0, 2, 0, "2", "gpu[01-02")).find("unbalanced"), std::string::npos);
}

TEST(LaunchEnv, SlurmTasksPerNodeOfThisNode) {
  // "2(x3),1": nodes 0..2 run two tasks, node 3 runs one.
  auto vars = with(slurm(6, 7, 0, "2(x3),1", "n[0-3]"), {{"SLURM_NODEID", "3"}});
  EXPECT_EQ(detect(vars).local_world, 1);
  vars["SLURM_NODEID"] = "2";
  vars["SLURM_PROCID"] = "5";
  vars["SLURM_LOCALID"] = "1";
  EXPECT_EQ(detect(vars).local_world, 2);
  // The step's task count wins over the allocation's.
  auto step = with(slurm(1, 16, 1, "8(x2)", "n[0-1]"), {{"SLURM_STEP_NUM_TASKS", "2"},
                                                        {"SLURM_STEP_TASKS_PER_NODE", "2"}});
  EXPECT_EQ(detect(step).world, 2);
  EXPECT_EQ(detect(step).local_world, 2);
}

TEST(LaunchEnv, MasterOverridesSlurm) {
  const auto env = detect(with(slurm(0, 2, 0, "2", "gpu[01-02]"), {{"MASTER_ADDR", "head"}, {"MASTER_PORT", "4000"}}));
  EXPECT_EQ(env.master_addr, "head");
  EXPECT_EQ(env.master_port, 4000);
}

TEST(LaunchEnv, OpenMpi) {
  const auto env = detect(openmpi(3, 4, 3, 4));
  EXPECT_EQ(env.launcher, "openmpi");
  EXPECT_EQ(env.rank, 3);
  EXPECT_EQ(env.world, 4);
  EXPECT_EQ(env.local_rank, 3);
  EXPECT_EQ(env.master_addr, "127.0.0.1");
  // Several nodes: rank 0's host must be given.
  const auto err = error_for(openmpi(3, 4, 1, 2));
  EXPECT_NE(err.find("MASTER_ADDR"), std::string::npos) << err;
  EXPECT_EQ(detect(with(openmpi(3, 4, 1, 2), {{"MASTER_ADDR", "n0"}})).master_addr, "n0");
}

TEST(LaunchEnv, InnermostLauncherWins) {
  // srun ... torchrun: SLURM describes the per-node agents, torchrun the workers.
  const auto env = detect(with(slurm(1, 2, 0, "1(x2)", "n[0-1]"), torchrun(9, 16, 1, 8)));
  EXPECT_EQ(env.launcher, "torchrun");
  EXPECT_EQ(env.rank, 9);
  // mpirun inside an sbatch allocation: SLURM describes the batch step.
  const auto mpi = detect(with(slurm(0, 8, 0, "8", "n0"), openmpi(2, 4, 2, 4)));
  EXPECT_EQ(mpi.launcher, "openmpi");
  EXPECT_EQ(mpi.rank, 2);
}

TEST(LaunchEnv, AgreeingLaunchersAreFine) {
  const auto env = detect(with(openmpi(1, 2, 1, 2), {{"RANK", "1"}, {"WORLD_SIZE", "2"}}));
  EXPECT_EQ(env.launcher, "openmpi");
  EXPECT_EQ(env.rank, 1);
}

TEST(LaunchEnv, DisagreeingLaunchersAreAnError) {
  // A stale exported RANK/WORLD_SIZE under mpirun or srun.
  auto err = error_for(with(openmpi(2, 4, 2, 4), {{"RANK", "0"}, {"WORLD_SIZE", "4"}}));
  EXPECT_NE(err.find("rank 0 of 4"), std::string::npos) << err;
  EXPECT_NE(err.find("rank 2 of 4"), std::string::npos) << err;
  EXPECT_NE(err.find("OMPI_COMM_WORLD_RANK"), std::string::npos) << err;
  err = error_for(with(slurm(1, 2, 1, "2", "n0"), {{"RANK", "1"}, {"WORLD_SIZE", "4"}}));
  EXPECT_NE(err.find("SLURM_PROCID"), std::string::npos) << err;
}

TEST(LaunchEnv, InconsistentTorchrunVariables) {
  auto err = error_for({{"WORLD_SIZE", "2"}});
  EXPECT_NE(err.find("RANK is not"), std::string::npos) << err;
  err = error_for({{"RANK", "0"}});
  EXPECT_NE(err.find("WORLD_SIZE is not"), std::string::npos) << err;
  err = error_for({{"LOCAL_RANK", "0"}});
  EXPECT_NE(err.find("LOCAL_RANK is set"), std::string::npos) << err;
  err = error_for({{"RANK", "2"}, {"WORLD_SIZE", "2"}});
  EXPECT_NE(err.find("rank 2 is out of range for world size 2"), std::string::npos) << err;
  err = error_for({{"RANK", "0"}, {"WORLD_SIZE", "0"}});
  EXPECT_NE(err.find("world size is 0"), std::string::npos) << err;
  err = error_for(torchrun(1, 4, 2, 2));
  EXPECT_NE(err.find("local rank 2 is out of range for local world size 2"), std::string::npos) << err;
  err = error_for(torchrun(1, 4, 0, 8));
  EXPECT_NE(err.find("local world size 8"), std::string::npos) << err;
  err = error_for({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"LOCAL_WORLD_SIZE", "0"}});
  EXPECT_NE(err.find("local world size 0"), std::string::npos) << err;
}

TEST(LaunchEnv, NonNumericAndNegativeValues) {
  for (const char* bad : {"-1", "two", "1.5", " 1", "99999999999"}) {
    const auto err = error_for({{"RANK", bad}, {"WORLD_SIZE", "2"}});
    EXPECT_NE(err.find(std::string("RANK='") + bad + "' is not a non-negative integer"), std::string::npos) << err;
  }
  auto err = error_for(with(torchrun(0, 2, 0, 2), {{"MASTER_PORT", "http"}}));
  EXPECT_NE(err.find("MASTER_PORT='http'"), std::string::npos) << err;
  err = error_for(with(torchrun(0, 2, 0, 2), {{"MASTER_PORT", "70000"}}));
  EXPECT_NE(err.find("not a TCP port"), std::string::npos) << err;
  err = error_for(slurm(0, 2, 0, "x(x2)", "n0"));
  EXPECT_NE(err.find("SLURM_TASKS_PER_NODE"), std::string::npos) << err;
  err = error_for(with(slurm(0, 2, 0, "2", "n0"), {{"SLURM_JOB_ID", "abc"}}));
  EXPECT_NE(err.find("SLURM_JOB_ID='abc'"), std::string::npos) << err;
  err = error_for({{"OMPI_COMM_WORLD_RANK", "0"}});
  EXPECT_NE(err.find("OMPI_COMM_WORLD_SIZE"), std::string::npos) << err;
}
