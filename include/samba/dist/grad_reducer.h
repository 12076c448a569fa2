#pragma once
// Data-parallel gradient reduction that overlaps the backward pass (the DDP / llm.c shape):
// a post-accumulate hook on every parameter counts down its bucket; when a bucket is complete
// its all-reduce (or, under ZeRO-1, reduce-scatter) is launched asynchronously, in bucket
// order on every rank, while autograd keeps computing earlier layers' gradients. Micro-steps
// that only accumulate launch nothing. Gradients are summed: scale the loss by
// 1 / (accumulation x world) to get the mean.
#include <memory>

#include "samba/dist/flat_params.h"
#include "samba/runtime/comm.h"

namespace samba::dist {

struct ReducerStats {
  int buckets_launched_in_backward = 0;  // overlap achieved: launched before backward returned
  double exposed_seconds = 0;            // time finish() waited for communication
};

class GradReducer {
 public:
  // `shard`: reduce-scatter each bucket (rank r ends up with the sum of piece r only);
  // otherwise all-reduce (every rank gets the full sum). One process reduces nothing unless
  // `always` (to exercise the collective path on one device).
  GradReducer(FlatParameters& flat, runtime::Communicator& comm, bool shard, bool always = false);
  ~GradReducer();
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  // Before each micro-step's backward: `sync` on the last micro-step of an optimizer step.
  void begin_backward(bool sync);
  // After that backward: launches the buckets not launched yet (parameters that got no
  // gradient), in order, and waits for all of them.
  void finish();
  const ReducerStats& stats() const { return stats_; }

  struct State;

 private:
  FlatParameters& flat_;
  runtime::Communicator& comm_;
  std::shared_ptr<State> state_;
  bool enabled_ = false;
  ReducerStats stats_;
};

// ZeRO-1, after each rank updated its piece of every bucket: gathers the pieces back so every
// rank holds all parameters again (one async all-gather per bucket, then a wait on all).
void gather_parameter_pieces(FlatParameters& flat, runtime::Communicator& comm);

}  // namespace samba::dist
