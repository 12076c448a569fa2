#include "samba/dist/grad_reducer.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <chrono>
#include <mutex>

#include "samba/core/error.h"

namespace samba::dist {

struct GradReducer::State {
  FlatParameters* flat = nullptr;
  runtime::Communicator* comm = nullptr;
  bool shard = false;
  std::mutex mu;
  bool active = true;  // false once the reducer is gone (the hooks outlive it)
  bool sync = false;
  std::vector<int> pending;  // per bucket: parameters whose gradient is not accumulated yet
  std::vector<int> expected;
  int next = 0;              // the next bucket to launch; buckets go out in order on every rank
  std::vector<runtime::CommHandlePtr> handles;
  int launched_in_backward = 0;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators;  // keep the hooks' nodes alive

  // Called with mu held.
  void launch(int b) {
    const Bucket& bucket = flat->buckets()[static_cast<size_t>(b)];
    auto whole = flat->grads().narrow(0, bucket.begin, bucket.end - bucket.begin);
    if (shard) {
      auto [lo, hi] = flat->piece(b, comm->rank());
      handles.push_back(comm->reduce_scatter(flat->grads().narrow(0, lo, hi - lo), whole,
                                             runtime::ReduceOp::Sum, /*async=*/true));
    } else {
      handles.push_back(comm->all_reduce(whole, runtime::ReduceOp::Sum, /*async=*/true));
    }
  }
  void launch_ready() {
    while (next < static_cast<int>(pending.size()) && pending[static_cast<size_t>(next)] == 0) launch(next++);
  }
};

namespace {

class AccumulatedHook : public torch::autograd::FunctionPostHook {
 public:
  AccumulatedHook(std::shared_ptr<GradReducer::State> state, int bucket) : state_(std::move(state)), bucket_(bucket) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/) override {
    auto& s = *state_;
    std::lock_guard<std::mutex> lock(s.mu);
    if (!s.active || !s.sync) return outputs;
    auto& left = s.pending[static_cast<size_t>(bucket_)];
    if (left > 0 && --left == 0) {
      const int before = s.next;
      s.launch_ready();
      s.launched_in_backward += s.next - before;
    }
    return outputs;
  }

 private:
  std::shared_ptr<GradReducer::State> state_;
  int bucket_;
};

}  // namespace

GradReducer::GradReducer(FlatParameters& flat, runtime::Communicator& comm, bool shard, bool always)
    : flat_(flat), comm_(comm), state_(std::make_shared<State>()), enabled_(comm.distributed() || always) {
  check(!shard || flat.world() == comm.world(), "GradReducer: the flat layout has ", flat.world(),
        " pieces per bucket but the communicator has ", comm.world(), " ranks");
  state_->flat = &flat;
  state_->comm = &comm;
  state_->shard = shard;
  state_->expected.assign(flat.buckets().size(), 0);
  if (!enabled_) return;  // one process: nothing to reduce, no hooks
  for (const auto& slot : flat.slots()) {
    if (!slot.param.requires_grad()) continue;
    auto acc = torch::autograd::impl::grad_accumulator(slot.param);
    check(acc != nullptr, "GradReducer: parameter ", slot.name, " has no gradient accumulator");
    acc->add_post_hook(std::make_unique<AccumulatedHook>(state_, slot.bucket));
    state_->accumulators.push_back(std::move(acc));
    state_->expected[static_cast<size_t>(slot.bucket)] += 1;
  }
}

GradReducer::~GradReducer() {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->active = false;
  for (auto& h : state_->handles) {
    try {
      h->wait();
    } catch (...) {  // the error was (or will be) reported by finish(); never throw from here
    }
  }
  state_->handles.clear();
}

void GradReducer::begin_backward(bool sync) {
  std::lock_guard<std::mutex> lock(state_->mu);
  check(state_->handles.empty(), "GradReducer: begin_backward while reductions are outstanding; call finish()");
  state_->sync = sync && enabled_;
  state_->pending = state_->expected;
  state_->next = 0;
  state_->launched_in_backward = 0;
}

void GradReducer::finish() {
  std::vector<runtime::CommHandlePtr> handles;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (!state_->sync) return;
    stats_.buckets_launched_in_backward = state_->launched_in_backward;
    // Buckets with a parameter that got no gradient this step (unused in the forward).
    while (state_->next < static_cast<int>(state_->pending.size())) state_->launch(state_->next++);
    handles.swap(state_->handles);
    state_->sync = false;
  }
  const auto start = std::chrono::steady_clock::now();
  for (auto& h : handles) h->wait();
  stats_.exposed_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void gather_parameter_pieces(FlatParameters& flat, runtime::Communicator& comm) {
  std::vector<runtime::CommHandlePtr> pending;
  for (int b = 0; b < static_cast<int>(flat.buckets().size()); ++b) {
    const Bucket& bucket = flat.buckets()[static_cast<size_t>(b)];
    auto [lo, hi] = flat.piece(b, comm.rank());
    auto whole = flat.params().narrow(0, bucket.begin, bucket.end - bucket.begin);
    // The piece is a view into `whole`: gather from a copy so no backend reads what it writes.
    pending.push_back(comm.all_gather(whole, flat.params().narrow(0, lo, hi - lo).clone(), /*async=*/true));
  }
  for (auto& p : pending) p->wait();
}

}  // namespace samba::dist
