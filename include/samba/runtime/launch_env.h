#pragma once
// Where this process sits in a launch: read from the launcher's environment variables.
// Torch-free (lives in samba_base) so it is tested without libtorch.
//
//   torchrun : RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT,
//              TORCHELASTIC_RESTART_COUNT, TORCHELASTIC_USE_AGENT_STORE
//   SLURM    : SLURM_PROCID, SLURM_LOCALID, SLURM_NTASKS, SLURM_NTASKS_PER_NODE / SLURM_TASKS_PER_NODE,
//              master = first host of SLURM_NODELIST (or SLURM_JOB_NODELIST), port derived from SLURM_JOB_ID
//   OpenMPI  : OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK,
//              OMPI_COMM_WORLD_LOCAL_SIZE, master from MASTER_ADDR / MASTER_PORT (or defaults)
//   none     : a single process (rank 0 of 1) that needs no store and no network.
// MASTER_ADDR / MASTER_PORT, when set, override what a launcher derives.
#include <functional>
#include <string>

namespace samba::runtime {

struct LaunchEnv {
  std::string launcher = "single";  // single | torchrun | slurm | openmpi
  int rank = 0;
  int world = 1;
  int local_rank = 0;
  int local_world = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  int restart_count = 0;  // torchrun's TORCHELASTIC_RESTART_COUNT
  // torchrun's agent already serves the TCPStore at master_addr:master_port
  // (TORCHELASTIC_USE_AGENT_STORE=True, the default with its c10d rendezvous): every rank
  // connects as a client, and keys are scoped by restart_count.
  bool agent_store = false;

  bool distributed() const { return world > 1; }
  // "rank 1/4 (local 1/4) via torchrun, master 10.0.0.1:29500"
  std::string describe() const;
};

using GetEnv = std::function<const char*(const char*)>;

// Reads the launch environment. An inconsistent one (WORLD_SIZE without RANK, a rank out of
// range, two launchers' variables disagreeing, a non-numeric value) throws samba::Error naming
// the variables and the fix.
LaunchEnv detect_launch_env(const GetEnv& getenv);
LaunchEnv detect_launch_env();  // from the process environment

}  // namespace samba::runtime
