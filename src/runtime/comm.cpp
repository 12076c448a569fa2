// The communicator: c10d process groups over a TCPStore rendezvous (see comm.h).
//
// Backends: Gloo on CPU (the CPU build, compiled with USE_C10D_GLOO and libgloo-dev's headers),
// NCCL on CUDA (the GPU build, USE_C10D_NCCL with the torch wheel's NCCL). CMake defines
// SAMBA_HAVE_GLOO / SAMBA_HAVE_NCCL for this file only when the headers were found.
//
// libtorch 1.13 and 2.x differ here: in 2.x the process-group implementations are
// c10d::Backend subclasses, in 1.13 c10d::ProcessGroup subclasses; the collective methods
// used below have the same names and signatures in both.
#include "samba/runtime/comm.h"

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/version.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iomanip>
#include <mutex>
#include <sstream>
#include <thread>

#ifdef SAMBA_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef SAMBA_HAVE_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "samba/core/error.h"

namespace samba::runtime {
namespace {

#if TORCH_VERSION_MAJOR >= 2
using Group = c10d::Backend;
#else
using Group = c10d::ProcessGroup;
#endif
using GroupPtr = c10::intrusive_ptr<Group>;
using StorePtr = c10::intrusive_ptr<c10d::Store>;
using std::chrono::milliseconds;

std::string message_of(const std::exception& e) {
  // c10::Error::what() appends a C++ backtrace; users need the first part only.
  if (const auto* ce = dynamic_cast<const c10::Error*>(&e)) return ce->what_without_backtrace();
  return e.what();
}

c10d::ReduceOp to_c10d(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return c10d::ReduceOp::SUM;
    case ReduceOp::Max: return c10d::ReduceOp::MAX;
    case ReduceOp::Min: return c10d::ReduceOp::MIN;
  }
  fail("comm: unknown reduce op");
}

class DoneHandle final : public CommHandle {
 public:
  void wait() override {}
};

// ---- the single-process communicator: nothing to talk to ----------------------------------
class LocalComm final : public Communicator {
 public:
  explicit LocalComm(torch::Device device) : device_(device) {}
  int rank() const override { return 0; }
  int world() const override { return 1; }
  torch::Device device() const override { return device_; }
  std::string backend() const override { return "none"; }

  CommHandlePtr all_reduce(torch::Tensor, ReduceOp, bool) override { return done(); }
  CommHandlePtr reduce_scatter(torch::Tensor output, torch::Tensor input, ReduceOp, bool) override {
    check(output.numel() == input.numel(), "comm: reduce_scatter output has ", output.numel(),
          " elements but input has ", input.numel(), " (world 1)");
    if (!output.is_same(input)) output.view(-1).copy_(input.view(-1));
    return done();
  }
  CommHandlePtr all_gather(torch::Tensor output, torch::Tensor input, bool) override {
    check(output.numel() == input.numel(), "comm: all_gather output has ", output.numel(),
          " elements but input has ", input.numel(), " (world 1)");
    if (!output.is_same(input)) output.view(-1).copy_(input.view(-1));
    return done();
  }
  void broadcast(torch::Tensor, int root) override { check_root(root); }
  void barrier() override {}
  std::string broadcast_string(const std::string& s, int root) override {
    check_root(root);
    return s;
  }
  void shutdown() override {}

 private:
  static CommHandlePtr done() {
    static const auto handle = std::make_shared<DoneHandle>();
    return handle;
  }
  static void check_root(int root) { check(root == 0, "comm: broadcast root ", root, " is not a rank of world 1"); }
  torch::Device device_;
};

// ---- liveness: who stopped responding? ----------------------------------------------------
// A collective that fails tells only that *some* peer went away (Gloo reports a closed socket
// or a timeout, not a rank). Every rank therefore bumps a counter in the store every `period`;
// after a failure, the ranks whose counters stopped moving are the dead ones. The store lives
// in rank 0, so rank 0's death shows as an unreachable store. Only the failure path reads
// other ranks' counters: a healthy job costs one store increment per rank and period.
class Liveness {
 public:
  Liveness(StorePtr store, int rank, int world, milliseconds period)
      : store_(std::move(store)), rank_(rank), world_(world), period_(period) {
    thread_ = std::thread([this] { run(); });
  }
  ~Liveness() { stop(); }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  // What went wrong, the same text on every rank: the first rank to fail names the ranks
  // whose heartbeats stopped (takes ~3 periods) and publishes it in the store; later ones
  // read it, because by then the survivors that already gave up have stopped heartbeating too.
  std::string diagnose(const std::string& master) {
    const std::string gone = "the rendezvous store at " + master +
                             " no longer answers: its server (rank 0, or torchrun's agent) is gone";
    try {
      std::string text;
      if (store_->check({kFault})) {
        text = as_string(store_->get(kFault));
      } else {
        text = name_silent_ranks();
        text = as_string(store_->compareSet(kFault, {}, as_bytes(text)));  // the first writer wins
      }
      store_->add(kFaultSeen, 1);
      return text;
    } catch (const std::exception&) {
      return gone;
    }
  }

  // Rank 0 serves the store: before it exits after a failure, it gives the other survivors
  // (up to `limit`) time to read the diagnosis.
  void linger_for_survivors(milliseconds limit) {
    const auto end = std::chrono::steady_clock::now() + limit;
    try {
      while (std::chrono::steady_clock::now() < end && store_->add(kFaultSeen, 0) < world_ - silent_) {
        std::this_thread::sleep_for(milliseconds(20));
      }
    } catch (const std::exception&) {
    }
  }

 private:
  static constexpr const char* kFault = "fault";
  static constexpr const char* kFaultSeen = "fault_seen";
  static std::string key(int r) { return "alive/" + std::to_string(r); }
  static std::string as_string(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }
  static std::vector<uint8_t> as_bytes(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }

  std::string name_silent_ranks() {
    std::vector<int64_t> before(world_), after(world_);
    for (int r = 0; r < world_; ++r) before[r] = store_->add(key(r), 0);
    std::this_thread::sleep_for(period_ * 3);
    for (int r = 0; r < world_; ++r) after[r] = store_->add(key(r), 0);
    std::ostringstream dead;
    silent_ = 0;
    for (int r = 0; r < world_; ++r) {
      if (r != rank_ && after[r] == before[r]) dead << (silent_++ ? ", " : "") << r;
    }
    if (silent_ == 0) return "every rank is still alive, so one is hung or the ranks called different collectives";
    return std::string(silent_ == 1 ? "rank " : "ranks ") + dead.str() + (silent_ == 1 ? " is" : " are") +
           " dead or frozen (stopped sending heartbeats)";
  }

  void run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      lock.unlock();
      try {
        store_->add(key(rank_), 1);
      } catch (const std::exception&) {
        return;  // the store is gone (rank 0 died or shut down): nothing left to report to
      }
      lock.lock();
      cv_.wait_for(lock, period_, [this] { return stopping_; });
    }
  }

  StorePtr store_;
  int rank_, world_;
  milliseconds period_;
  int silent_ = 1;  // ranks named dead; 1 when another rank diagnosed (at least one is gone)
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

// What a distributed communicator and its outstanding handles share; handles keep it alive.
struct State {
  LaunchEnv env;
  torch::Device device{torch::kCPU};
  std::string backend;
  milliseconds timeout{0};
  StorePtr store;  // the TCPStore (served by rank 0 or torchrun's agent), scoped to this attempt
  GroupPtr group;
  std::unique_ptr<Liveness> liveness;
  std::mutex mu;
  std::string broken;  // the first failure: later collectives fail at once with it
  bool shut = false;

  std::string where() const { return "rank " + std::to_string(env.rank) + "/" + std::to_string(env.world); }

  void check_usable(const char* op) {
    std::lock_guard<std::mutex> lock(mu);
    check(!shut, "comm: ", op, " on ", where(), " after shutdown()");
    check(broken.empty(), "comm: ", op, " on ", where(), " refused: the communicator failed earlier: ", broken);
  }

  // Waits for `work`; a failure becomes a samba::Error that names this rank, the operation,
  // the timeout and (from the heartbeats) the rank that died.
  void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* op) {
    const auto start = std::chrono::steady_clock::now();
    try {
      work->wait();
      return;
    } catch (const std::exception& e) {
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      {
        // Other outstanding handles fail the same way: report the first failure, once diagnosed.
        std::lock_guard<std::mutex> lock(mu);
        if (!broken.empty()) throw Error(broken);
      }
      std::ostringstream msg;
      msg << std::fixed << std::setprecision(2) << "comm: " << op << " failed on " << where() << " (" << backend
          << ", timeout " << timeout.count() / 1000.0 << " s, waited " << waited << " s): " << message_of(e)
          << ". Diagnosis: "
          << (liveness ? liveness->diagnose(env.master_addr + ":" + std::to_string(env.master_port)) : "none")
          << ". The job cannot continue; restart it (training resumes from the last checkpoint).";
      {
        std::lock_guard<std::mutex> lock(mu);
        if (broken.empty()) broken = msg.str();
      }
      throw Error(msg.str());
    }
  }

  void shutdown() {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (shut) return;
      shut = true;
    }
    if (liveness) {
      liveness->stop();
      bool failed = false;
      {
        std::lock_guard<std::mutex> lock(mu);
        failed = !broken.empty();
      }
      if (failed && env.rank == 0) liveness->linger_for_survivors(timeout);
    }
#if TORCH_VERSION_MAJOR >= 2 && defined(SAMBA_HAVE_NCCL)
    // NCCL's communicators must be destroyed explicitly before exit (gpu-machine.md).
    if (group && backend == "nccl") {
      try {
        group->shutdown();
      } catch (const std::exception&) {
        // a failed group cannot shut down cleanly; its resources go with the process
      }
    }
#endif
    group.reset();
    liveness.reset();
    store.reset();
  }
};

class WorkHandle final : public CommHandle {
 public:
  WorkHandle(std::shared_ptr<State> state, c10::intrusive_ptr<c10d::Work> work, const char* op,
             std::function<void()> after)
      : state_(std::move(state)), work_(std::move(work)), op_(op), after_(std::move(after)) {}
  void wait() override {
    if (done_) return;
    state_->wait(work_, op_);
    if (after_) after_();
    done_ = true;
  }

 private:
  std::shared_ptr<State> state_;
  c10::intrusive_ptr<c10d::Work> work_;
  const char* op_;
  std::function<void()> after_;
  bool done_ = false;
};

// ---- the distributed communicator over a c10d group ---------------------------------------
class GroupComm final : public Communicator {
 public:
  explicit GroupComm(std::shared_ptr<State> state) : s_(std::move(state)) {}
  ~GroupComm() override { s_->shutdown(); }

  int rank() const override { return s_->env.rank; }
  int world() const override { return s_->env.world; }
  torch::Device device() const override { return s_->device; }
  std::string backend() const override { return s_->backend; }

  CommHandlePtr all_reduce(torch::Tensor t, ReduceOp op, bool async) override {
    check_tensor(t, "all_reduce");
    c10d::AllreduceOptions opts;
    opts.reduceOp = to_c10d(op);
    std::vector<at::Tensor> tensors{t};
    return finish(s_->group->allreduce(tensors, opts), "all_reduce", async);
  }

  CommHandlePtr reduce_scatter(torch::Tensor output, torch::Tensor input, ReduceOp op, bool async) override {
    check_tensor(output, "reduce_scatter");
    check_tensor(input, "reduce_scatter");
    check(output.numel() * world() == input.numel(), "comm: reduce_scatter input has ", input.numel(),
          " elements, which is not world (", world(), ") x the output's ", output.numel());
    check(output.scalar_type() == input.scalar_type(), "comm: reduce_scatter input and output dtypes differ");
    c10d::ReduceScatterOptions opts;
    opts.reduceOp = to_c10d(op);
    if (s_->backend == "gloo") {
      // Gloo has no reduce-scatter primitive in libtorch 1.13: all-reduce a copy (the input
      // stays untouched, as with NCCL) and keep this rank's slice.
      c10d::AllreduceOptions ar;
      ar.reduceOp = opts.reduceOp;
      auto full = input.reshape(-1).clone();
      std::vector<at::Tensor> tensors{full};
      const int64_t n = output.numel(), offset = n * rank();
      auto out = output.view(-1);
      return finish(s_->group->allreduce(tensors, ar), "reduce_scatter", async,
                    [full, out, offset, n]() mutable { out.copy_(full.narrow(0, offset, n)); });
    }
    auto out = output.view(-1), in = input.view(-1);
    return finish(s_->group->_reduce_scatter_base(out, in, opts), "reduce_scatter", async);
  }

  CommHandlePtr all_gather(torch::Tensor output, torch::Tensor input, bool async) override {
    check_tensor(output, "all_gather");
    check_tensor(input, "all_gather");
    check(output.numel() == input.numel() * world(), "comm: all_gather output has ", output.numel(),
          " elements, which is not world (", world(), ") x the input's ", input.numel());
    check(output.scalar_type() == input.scalar_type(), "comm: all_gather input and output dtypes differ");
    auto out = output.view(-1), in = input.view(-1);
    if (s_->backend == "gloo") {
      // Gloo lacks _allgather_base in 1.13: gather into the slices of the output, as views.
      std::vector<std::vector<at::Tensor>> outs(1);
      for (int r = 0; r < world(); ++r) outs[0].push_back(out.narrow(0, r * in.numel(), in.numel()));
      std::vector<at::Tensor> ins{in};
      return finish(s_->group->allgather(outs, ins), "all_gather", async);
    }
    return finish(s_->group->_allgather_base(out, in), "all_gather", async);
  }

  void broadcast(torch::Tensor t, int root) override {
    check_tensor(t, "broadcast");
    check_root(root);
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    std::vector<at::Tensor> tensors{t};
    finish(s_->group->broadcast(tensors, opts), "broadcast", false);
  }

  // A one-element all-reduce read back on the host: every rank has arrived. (Used instead of
  // the group's barrier, which on NCCL guesses a device.)
  void barrier() override {
    auto t = torch::ones({1}, torch::TensorOptions().dtype(torch::kFloat32).device(s_->device));
    finish_all_reduce_of(t, "barrier");
    check(t.item<float>() == static_cast<float>(world()), "comm: barrier on ", s_->where(), " saw ",
          t.item<float>(), " ranks instead of ", world());
  }

  std::string broadcast_string(const std::string& s, int root) override {
    check_root(root);
    const auto on_device = torch::TensorOptions().device(s_->device);
    auto len = torch::full({1}, static_cast<int64_t>(s.size()), on_device.dtype(torch::kInt64));
    broadcast(len, root);
    const int64_t n = len.item<int64_t>();
    if (n == 0) return "";
    auto bytes = torch::empty({n}, torch::TensorOptions().dtype(torch::kUInt8));
    if (rank() == root) std::memcpy(bytes.data_ptr<uint8_t>(), s.data(), s.size());
    auto dev_bytes = bytes.to(s_->device);
    broadcast(dev_bytes, root);
    bytes = dev_bytes.cpu();
    return std::string(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()), static_cast<size_t>(n));
  }

  void shutdown() override { s_->shutdown(); }

 private:
  void finish_all_reduce_of(torch::Tensor t, const char* op) {
    s_->check_usable(op);
    std::vector<at::Tensor> tensors{t};
    s_->wait(s_->group->allreduce(tensors), op);
  }

  CommHandlePtr finish(c10::intrusive_ptr<c10d::Work> work, const char* op, bool async,
                       std::function<void()> after = {}) {
    auto handle = std::make_shared<WorkHandle>(s_, std::move(work), op, std::move(after));
    if (!async) handle->wait();
    return handle;
  }

  void check_tensor(const torch::Tensor& t, const char* op) {
    s_->check_usable(op);
    check(t.defined(), "comm: ", op, " got an undefined tensor");
    check(t.is_contiguous(), "comm: ", op, " needs a contiguous tensor (call .contiguous() first)");
    check(t.device() == s_->device, "comm: ", op, " got a tensor on ", t.device(), " but the communicator is on ",
          s_->device, " (", s_->backend, ")");
  }

  void check_root(int root) {
    check(root >= 0 && root < world(), "comm: broadcast root ", root, " is not a rank of world ", world());
  }

  std::shared_ptr<State> s_;
};

bool is_loopback(const std::string& addr) { return addr == "localhost" || addr.rfind("127.", 0) == 0; }

GroupPtr make_gloo(const State& s, const StorePtr& store) {
#ifdef SAMBA_HAVE_GLOO
  auto opts = c10d::ProcessGroupGloo::Options::create(s.timeout);
  // Bind where the peers can reach us: an explicit interface, the loopback for one-host
  // runs rendezvousing on 127.0.0.1, else this host's name (Gloo's default).
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname != nullptr && *ifname != '\0') {
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  } else if (is_loopback(s.env.master_addr)) {
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  } else {
    opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, s.env.rank, s.env.world, opts);
#else
  (void)s;
  (void)store;
  fail("comm: this build has no Gloo (CPU data parallelism); install libgloo-dev and rebuild, or run one process");
#endif
}

GroupPtr make_nccl(const State& s, const StorePtr& store) {
#ifdef SAMBA_HAVE_NCCL
  c10::cuda::set_device(s.device.index());
  // A dead or hung peer must end every rank within the timeout: NCCL's watchdog aborts the
  // communicators and tears the process down (instead of hanging in a kernel forever).
  // Users who set the variable themselves keep their choice.
  setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1", /*overwrite=*/0);
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  opts->timeout = s.timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, s.env.rank, s.env.world, opts);
#else
  (void)s;
  (void)store;
  fail("comm: this build has no NCCL; build on the GPU machine with the torch wheel's NCCL "
       "(see README, Multi-GPU), or run one process");
#endif
}

}  // namespace

std::unique_ptr<Communicator> Communicator::create(const LaunchEnv& env, const torch::Device& device,
                                                   const CommOptions& options) {
  check(env.world >= 1 && env.rank >= 0 && env.rank < env.world, "comm: rank ", env.rank,
        " is not in a world of ", env.world);
  if (env.world == 1 && !options.force_group) return std::make_unique<LocalComm>(device);
  check(options.timeout.count() > 0, "comm: the timeout must be positive");

  auto s = std::make_shared<State>();
  s->env = env;
  s->device = device;
  s->timeout = options.timeout;
  s->backend = device.is_cuda() ? "nccl" : "gloo";
  check(device.is_cpu() || device.is_cuda(), "comm: no backend for device ", device);
  check(!device.is_cuda() || device.has_index(), "comm: a CUDA communicator needs an indexed device (cuda:N)");

  const std::string master = env.master_addr + ":" + std::to_string(env.master_port);
  const bool serve = env.rank == 0 && !env.agent_store;  // torchrun's agent may serve it already
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(env.master_port);
    so.isServer = serve;
    // Every rank counts itself in and the server waits for all of them (clients count only
    // when they know the number too).
    so.numWorkers = static_cast<size_t>(env.world);
    so.waitWorkers = !env.agent_store;
    so.timeout = options.timeout;
    StorePtr tcp = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
    // A restarted job (torchrun's restarts reuse the agent's store) must not read the keys of
    // the attempt before it.
    s->store = c10::make_intrusive<c10d::PrefixStore>("samba/attempt_" + std::to_string(env.restart_count), tcp);
  } catch (const std::exception& e) {
    fail("comm: rendezvous at ", master, " failed on rank ", env.rank, "/", env.world, ": ", message_of(e),
         serve ? " (did every rank start within the timeout? is MASTER_PORT free on this host?)"
               : " (did rank 0 start within the timeout, and is MASTER_ADDR/MASTER_PORT the same on every rank?)");
  }
  // Scoped keys: the heartbeats and the group's own keys never collide.
  StorePtr group_store = c10::make_intrusive<c10d::PrefixStore>("group", s->store);
  try {
    s->group = s->backend == "nccl" ? make_nccl(*s, group_store) : make_gloo(*s, group_store);
  } catch (const samba::Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("comm: creating the ", s->backend, " group failed on rank ", env.rank, "/", env.world, " (master ", master,
         "): ", message_of(e), " (did all ", env.world, " ranks start and reach the rendezvous within the timeout of ",
         options.timeout.count() / 1000.0, " s?)");
  }
  const auto period = std::clamp(options.timeout / 10, milliseconds(50), milliseconds(5000));
  s->liveness = std::make_unique<Liveness>(s->store, env.rank, env.world, period);
  auto comm = std::make_unique<GroupComm>(s);
  comm->barrier();  // every rank connected; errors surface here rather than in the first step
  return comm;
}

double Communicator::all_reduce_double(double v, ReduceOp op) {
  if (!distributed()) return v;
  auto t = torch::full({1}, v, torch::TensorOptions().dtype(torch::kFloat64).device(device()));
  all_reduce(t, op);
  return t.item<double>();
}

int64_t Communicator::all_reduce_int(int64_t v, ReduceOp op) {
  if (!distributed()) return v;
  auto t = torch::full({1}, v, torch::TensorOptions().dtype(torch::kInt64).device(device()));
  all_reduce(t, op);
  return t.item<int64_t>();
}

}  // namespace samba::runtime
