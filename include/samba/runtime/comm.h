#pragma once
// The one communicator every rank-aware component uses: c10d process groups (NCCL on CUDA,
// Gloo on CPU) over a TCPStore rendezvous. World size 1 creates no store and no group, and
// every collective is a no-op that returns a completed handle.
//
// Collectives take contiguous tensors on the communicator's device. Async ones return a
// handle; wait() blocks the calling thread (CPU/Gloo) or orders the current CUDA stream after
// the collective (NCCL), and throws samba::Error naming the peer/timeout when it failed.
#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "samba/runtime/launch_env.h"

namespace samba::runtime {

enum class ReduceOp { Sum, Max, Min };

class CommHandle {
 public:
  virtual ~CommHandle() = default;
  virtual void wait() = 0;
};
using CommHandlePtr = std::shared_ptr<CommHandle>;

struct CommOptions {
  // A collective that has not completed after this long fails on every rank (dead or hung
  // peer); the error names the rank and the timeout.
  std::chrono::milliseconds timeout{std::chrono::minutes(10)};
  // Build the store and the c10d group even for world 1 (runs the NCCL / Gloo path on a single
  // device, e.g. to test it on a one-GPU machine). Needs a free master_port.
  bool force_group = false;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  // world == 1: the no-op communicator. Otherwise rendezvous at env.master_addr:master_port
  // (rank 0 serves the TCPStore) and build NCCL (device CUDA) or Gloo (device CPU).
  static std::unique_ptr<Communicator> create(const LaunchEnv& env, const torch::Device& device,
                                              const CommOptions& options = {});

  virtual int rank() const = 0;
  virtual int world() const = 0;
  bool distributed() const { return world() > 1; }
  virtual torch::Device device() const = 0;
  // "none" (world 1), "gloo" or "nccl": for logs.
  virtual std::string backend() const = 0;

  // In place on `t`.
  virtual CommHandlePtr all_reduce(torch::Tensor t, ReduceOp op = ReduceOp::Sum, bool async = false) = 0;
  // `input` holds world() equal slices; rank r receives the reduced slice r in `output`
  // (output.numel() * world() == input.numel()).
  virtual CommHandlePtr reduce_scatter(torch::Tensor output, torch::Tensor input, ReduceOp op = ReduceOp::Sum,
                                       bool async = false) = 0;
  // Rank r's `input` lands in slice r of `output` (output.numel() == input.numel() * world()).
  virtual CommHandlePtr all_gather(torch::Tensor output, torch::Tensor input, bool async = false) = 0;
  virtual void broadcast(torch::Tensor t, int root = 0) = 0;
  virtual void barrier() = 0;

  // Conveniences for host values (one small collective each).
  double all_reduce_double(double v, ReduceOp op = ReduceOp::Sum);
  int64_t all_reduce_int(int64_t v, ReduceOp op = ReduceOp::Sum);
  // Rank `root`'s string on every rank.
  virtual std::string broadcast_string(const std::string& s, int root = 0) = 0;

  // Tear down (also called by the destructor); after it every collective throws.
  virtual void shutdown() = 0;
};

}  // namespace samba::runtime
