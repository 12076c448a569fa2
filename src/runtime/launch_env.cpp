#include "samba/runtime/launch_env.h"

#include <cstdlib>
#include <optional>
#include <sstream>
#include <vector>

#include "samba/core/error.h"

namespace samba::runtime {
namespace {

// Launchers can nest: `srun torchrun ...` (SLURM describes the torchrun agents, one per node),
// `mpirun` inside an sbatch allocation (SLURM describes the batch step or the orted daemons).
// The innermost launcher started this process, so it wins: a torchrun agent
// (TORCHELASTIC_RUN_ID set) over OpenMPI over SLURM. Plain RANK/WORLD_SIZE without a torchrun
// agent (the "env://" convention, set by hand or by another tool) must agree with the launcher
// that is present, because a stale exported RANK under mpirun/srun would otherwise silently
// give every process the same rank.

struct Reader {
  const GetEnv& getenv;

  const char* raw(const char* name) const {
    const char* v = getenv(name);
    return (v != nullptr && *v != '\0') ? v : nullptr;
  }
  bool has(const char* name) const { return raw(name) != nullptr; }

  std::optional<std::string> str(const char* name) const {
    const char* v = raw(name);
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  }

  // A non-negative decimal integer, or nullopt when unset.
  std::optional<int> integer(const char* name) const {
    const char* v = raw(name);
    if (v == nullptr) return std::nullopt;
    return parse(name, v);
  }

  static int parse(const std::string& name, const std::string& text) {
    bool ok = !text.empty() && text.size() <= 9;
    for (char c : text) ok = ok && c >= '0' && c <= '9';
    check(ok, "launch environment: ", name, "='", text,
          "' is not a non-negative integer; fix or unset it (it is read by torchrun / SLURM / OpenMPI "
          "launches)");
    return std::atoi(text.c_str());
  }
};

// The first host of a SLURM host list: "gpu[01-04,07],cpu5" -> "gpu01",
// "rack1-[1-2]-ib" -> "rack1-1-ib", "a,b" -> "a".
std::string first_slurm_host(const std::string& list) {
  std::string host;
  size_t i = 0;
  int depth = 0;
  bool took_first_in_group = false;
  for (; i < list.size(); ++i) {
    const char c = list[i];
    if (c == '[') {
      check(depth == 0, "launch environment: nested '[' in the SLURM node list '", list, "'");
      depth = 1;
      took_first_in_group = false;
      continue;
    }
    if (c == ']') {
      check(depth == 1, "launch environment: unbalanced ']' in the SLURM node list '", list, "'");
      depth = 0;
      continue;
    }
    if (depth == 0) {
      if (c == ',') break;  // the end of the first host (group)
      host += c;
      continue;
    }
    // Inside brackets: keep the first value of the first range ("01" of "01-04,07").
    if (took_first_in_group) continue;
    if (c == '-' || c == ',') {
      took_first_in_group = true;
      continue;
    }
    host += c;
  }
  check(depth == 0, "launch environment: unbalanced '[' in the SLURM node list '", list, "'");
  check(!host.empty(), "launch environment: cannot read a host from the SLURM node list '", list, "'");
  return host;
}

// SLURM_TASKS_PER_NODE for node `node`: "2(x3),1" means nodes 0-2 run 2 tasks, node 3 runs 1.
std::optional<int> slurm_tasks_on_node(const std::string& spec, int node) {
  std::stringstream ss(spec);
  std::string item;
  int first_node = 0;
  while (std::getline(ss, item, ',')) {
    int repeat = 1;
    std::string count = item;
    const auto paren = item.find("(x");
    if (paren != std::string::npos) {
      check(item.back() == ')', "launch environment: SLURM_TASKS_PER_NODE='", spec, "' is malformed");
      count = item.substr(0, paren);
      repeat = Reader::parse("SLURM_TASKS_PER_NODE", item.substr(paren + 2, item.size() - paren - 3));
    }
    const int tasks = Reader::parse("SLURM_TASKS_PER_NODE", count);
    if (node < first_node + repeat) return tasks;
    first_node += repeat;
  }
  return std::nullopt;
}

// A port per SLURM job, so two jobs sharing a node do not collide: inside [20000, 30000),
// above the well-known/registered ports most services use and below Linux's ephemeral range
// (32768+), where an outgoing connection could already hold it.
int port_from_job_id(const std::string& job_id_text) {
  const int job = Reader::parse("SLURM_JOB_ID", job_id_text);
  return 20000 + job % 10000;
}

struct Found {
  std::string launcher;
  int rank = 0, world = 1;
  std::optional<int> local_rank, local_world;
};

std::optional<Found> read_torchrun(const Reader& env) {
  const bool has_rank = env.has("RANK"), has_world = env.has("WORLD_SIZE");
  if (!has_rank && !has_world) {
    check(!env.has("LOCAL_RANK") || env.has("SLURM_PROCID") || env.has("OMPI_COMM_WORLD_RANK"),
          "launch environment: LOCAL_RANK is set but RANK and WORLD_SIZE are not; launch with torchrun "
          "(which sets all three) or unset LOCAL_RANK");
    return std::nullopt;
  }
  check(has_rank, "launch environment: WORLD_SIZE=", *env.str("WORLD_SIZE"),
        " is set but RANK is not; set RANK (0..WORLD_SIZE-1) for every process, or launch with torchrun");
  check(has_world, "launch environment: RANK=", *env.str("RANK"),
        " is set but WORLD_SIZE is not; set WORLD_SIZE, or launch with torchrun");
  Found f;
  f.launcher = "torchrun";
  f.rank = *env.integer("RANK");
  f.world = *env.integer("WORLD_SIZE");
  f.local_rank = env.integer("LOCAL_RANK");
  f.local_world = env.integer("LOCAL_WORLD_SIZE");
  return f;
}

std::optional<Found> read_openmpi(const Reader& env) {
  const bool has_rank = env.has("OMPI_COMM_WORLD_RANK"), has_size = env.has("OMPI_COMM_WORLD_SIZE");
  if (!has_rank && !has_size) return std::nullopt;
  check(has_rank && has_size,
        "launch environment: only one of OMPI_COMM_WORLD_RANK / OMPI_COMM_WORLD_SIZE is set; launch with "
        "mpirun, which sets both");
  Found f;
  f.launcher = "openmpi";
  f.rank = *env.integer("OMPI_COMM_WORLD_RANK");
  f.world = *env.integer("OMPI_COMM_WORLD_SIZE");
  f.local_rank = env.integer("OMPI_COMM_WORLD_LOCAL_RANK");
  f.local_world = env.integer("OMPI_COMM_WORLD_LOCAL_SIZE");
  return f;
}

std::optional<Found> read_slurm(const Reader& env) {
  // SLURM_PROCID marks a task started by srun (or the batch step itself); SLURM_JOB_ID alone
  // is an salloc shell, which is not a launch.
  if (!env.has("SLURM_PROCID")) return std::nullopt;
  Found f;
  f.launcher = "slurm";
  f.rank = *env.integer("SLURM_PROCID");
  // The step's task count, not the allocation's: a batch script's own process sees
  // SLURM_NTASKS of the whole allocation but is one task.
  auto world = env.integer("SLURM_STEP_NUM_TASKS");
  if (!world) world = env.integer("SLURM_NTASKS");
  if (!world) world = env.integer("SLURM_NPROCS");
  check(world.has_value(), "launch environment: SLURM_PROCID is set but neither SLURM_STEP_NUM_TASKS nor "
                           "SLURM_NTASKS is; launch the job with srun");
  f.world = *world;
  f.local_rank = env.integer("SLURM_LOCALID");
  const int node = env.integer("SLURM_NODEID").value_or(0);
  for (const char* name : {"SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"}) {
    if (f.local_world) break;
    if (auto spec = env.str(name)) f.local_world = slurm_tasks_on_node(*spec, node);
  }
  if (!f.local_world) f.local_world = env.integer("SLURM_NTASKS_PER_NODE");
  return f;
}

void check_consistent(const Found& a, const Found& b, const char* a_vars, const char* b_vars) {
  check(a.rank == b.rank && a.world == b.world, "launch environment: ", a.launcher, " (", a_vars, ") says rank ",
        a.rank, " of ", a.world, " but ", b.launcher, " (", b_vars, ") says rank ", b.rank, " of ", b.world,
        "; unset the stale variables (e.g. an exported RANK/WORLD_SIZE) so one launcher describes the job");
}

}  // namespace

std::string LaunchEnv::describe() const {
  std::ostringstream os;
  os << "rank " << rank << "/" << world << " (local " << local_rank << "/" << local_world << ") via " << launcher;
  if (distributed()) os << ", master " << master_addr << ":" << master_port;
  if (restart_count > 0) os << ", restart " << restart_count;
  return os.str();
}

LaunchEnv detect_launch_env(const GetEnv& getenv) {
  const Reader env{getenv};
  const auto torchrun = read_torchrun(env);
  const auto openmpi = read_openmpi(env);
  const auto slurm = read_slurm(env);

  std::optional<Found> chosen;
  if (torchrun && env.has("TORCHELASTIC_RUN_ID")) {
    chosen = torchrun;  // a real torchrun agent: outer SLURM/MPI variables describe the agents
  } else {
    const auto& outer = openmpi ? openmpi : slurm;
    if (torchrun && outer) {
      check_consistent(*torchrun, *outer, "RANK/WORLD_SIZE",
                       openmpi ? "OMPI_COMM_WORLD_RANK/SIZE" : "SLURM_PROCID/SLURM_NTASKS");
    }
    chosen = outer ? outer : torchrun;
  }

  LaunchEnv out;
  if (chosen) {
    const Found& f = *chosen;
    check(f.world >= 1, "launch environment: ", f.launcher, " world size is 0; it must be at least 1");
    check(f.rank < f.world, "launch environment: ", f.launcher, " rank ", f.rank, " is out of range for world size ",
          f.world, " (ranks are 0..", f.world - 1, "); fix RANK/WORLD_SIZE or the launcher's task count");
    out.launcher = f.launcher;
    out.rank = f.rank;
    out.world = f.world;
    // Without per-node information assume one node (local rank = rank); with only the node
    // size, ranks fill nodes in order, as every launcher here places them.
    out.local_world = f.local_world.value_or(f.world);
    check(out.local_world >= 1 && out.local_world <= f.world, "launch environment: ", f.launcher,
          " local world size ", out.local_world, " must be between 1 and the world size ", f.world);
    out.local_rank = f.local_rank.value_or(f.rank % out.local_world);
    check(out.local_rank < out.local_world, "launch environment: ", f.launcher, " local rank ", out.local_rank,
          " is out of range for local world size ", out.local_world,
          " (LOCAL_RANK must be below LOCAL_WORLD_SIZE); fix the launcher's per-node task count");
  }

  // Rendezvous address: MASTER_ADDR/MASTER_PORT always win; otherwise what the launcher implies.
  if (out.launcher == "slurm") {
    std::optional<std::string> list;
    for (const char* name : {"SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"}) {
      if (!list) list = env.str(name);
    }
    if (list) out.master_addr = first_slurm_host(*list);
    if (auto job = env.str("SLURM_JOB_ID")) out.master_port = port_from_job_id(*job);
  }
  if (auto addr = env.str("MASTER_ADDR")) out.master_addr = *addr;
  if (auto port = env.integer("MASTER_PORT")) {
    check(*port >= 1 && *port <= 65535, "launch environment: MASTER_PORT=", *port, " is not a TCP port (1..65535)");
    out.master_port = *port;
  }
  check(!(out.launcher == "openmpi" && out.distributed() && out.local_world < out.world && !env.has("MASTER_ADDR")),
        "launch environment: an mpirun job over several nodes needs MASTER_ADDR (the host of rank 0); pass it "
        "with 'mpirun -x MASTER_ADDR=<host> ...' (launch/mpirun.sh does this)");
  if (auto restarts = env.integer("TORCHELASTIC_RESTART_COUNT")) out.restart_count = *restarts;
  if (out.launcher == "torchrun") {
    const auto agent = env.str("TORCHELASTIC_USE_AGENT_STORE").value_or("");
    out.agent_store = agent == "True" || agent == "true" || agent == "1";
  }
  return out;
}

LaunchEnv detect_launch_env() {
  return detect_launch_env([](const char* name) { return std::getenv(name); });
}

}  // namespace samba::runtime
