#pragma once
// Parameters and gradients in two flat fp32 buffers (each parameter a view into them), cut into
// gradient buckets and, for ZeRO-1, into per-rank pieces.
//
// Physical layout: buckets one after the other; bucket 0 holds the *last* registered
// parameters (the first whose gradients the backward pass finishes), so buckets become ready
// in index order. Within a bucket parameters keep registration order. Each bucket is padded to
// a multiple of `world` * 16 elements so that it splits into `world` equal pieces (rank r
// owns piece r of every bucket under ZeRO-1); padding holds zeros and belongs to no parameter.
//
// Logical layout: the world-independent concatenation of all parameters in registration
// order. Optimizer state is saved by logical position, so a checkpoint written with one world
// size (and bucket size) loads with any other.
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace samba::dist {

struct FlatOptions {
  int world = 1;                     // pieces per bucket
  int64_t bucket_bytes = 25 << 20;   // target fp32 bytes per gradient bucket
};

struct ParamSlot {
  std::string name;
  torch::Tensor param;   // the module's parameter, now a view into params()
  int64_t logical = 0;   // offset in the logical layout
  int64_t physical = 0;  // offset in the flat buffers
  int64_t numel = 0;
  int bucket = 0;
};

struct Bucket {
  int64_t begin = 0, end = 0;  // physical, padded
  std::vector<int> slots;      // indices into slots()
  int64_t piece = 0;           // (end - begin) / world
};

// A stretch of the flat buffers that is one stretch of the logical layout.
struct Segment {
  int64_t physical = 0;
  int64_t logical = 0;
  int64_t length = 0;
};

class FlatParameters {
 public:
  // Moves every parameter's values into one flat buffer (on the parameters' device) and makes
  // the parameter a view of it; sets each .grad to a view of one flat gradient buffer, so
  // autograd accumulates in place. Parameters must be fp32 (master weights). A parameter
  // listed twice (tied weights) is stored once under its first name.
  FlatParameters(const std::vector<std::pair<std::string, torch::Tensor>>& named, const FlatOptions& options);

  torch::Tensor params() const { return params_; }
  torch::Tensor grads() const { return grads_; }
  const std::vector<ParamSlot>& slots() const { return slots_; }
  const std::vector<Bucket>& buckets() const { return buckets_; }
  int world() const { return world_; }
  int64_t numel() const { return params_.numel(); }  // physical, with padding
  int64_t logical_numel() const { return logical_numel_; }

  // Rank r's piece of bucket b, physical [first, second).
  std::pair<int64_t, int64_t> piece(int bucket, int rank) const;
  // The pieces a rank updates: all of every bucket (replicated optimizer) or piece r of each (ZeRO-1).
  std::vector<std::pair<int64_t, int64_t>> ranges_of(int rank, bool sharded) const;
  // The parts of physical [begin, end) that belong to parameters, with their logical offsets.
  std::vector<Segment> segments(int64_t begin, int64_t end) const;

  void zero_grad();
  // Checks that every parameter still views the flat buffers (a module that re-created its
  // parameters, or an optimizer that swapped .grad, would silently train a copy).
  void check_views() const;

 private:
  std::vector<ParamSlot> slots_;
  std::vector<Bucket> buckets_;
  std::vector<int> by_physical_;  // slot indices sorted by physical offset
  torch::Tensor params_, grads_;
  int world_ = 1;
  int64_t logical_numel_ = 0;
};

}  // namespace samba::dist
