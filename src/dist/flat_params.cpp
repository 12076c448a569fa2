#include "samba/dist/flat_params.h"

#include <algorithm>
#include <unordered_set>

#include "samba/core/error.h"

namespace samba::dist {
namespace {

constexpr int64_t kAlign = 16;  // elements: 64-byte aligned pieces for vectorised kernels

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

}  // namespace

FlatParameters::FlatParameters(const std::vector<std::pair<std::string, torch::Tensor>>& named,
                               const FlatOptions& options)
    : world_(options.world) {
  check(options.world >= 1, "FlatParameters: world must be >= 1, got ", options.world);
  check(options.bucket_bytes > 0, "FlatParameters: bucket_bytes must be positive, got ", options.bucket_bytes);
  check(!named.empty(), "FlatParameters: the model has no parameters");
  std::unordered_set<const void*> seen;
  torch::Device device = named.front().second.device();
  for (const auto& [name, p] : named) {
    if (!seen.insert(p.unsafeGetTensorImpl()).second) continue;  // tied: already stored
    check(p.scalar_type() == torch::kFloat32, "parameter ", name, " must be fp32 (master weights), got ",
          p.scalar_type());
    check(p.device() == device, "parameter ", name, " is on ", p.device().str(), " but ", named.front().first,
          " is on ", device.str(), "; move the whole model to one device first");
    ParamSlot s;
    s.name = name;
    s.param = p;
    s.numel = p.numel();
    s.logical = logical_numel_;
    logical_numel_ += s.numel;
    slots_.push_back(std::move(s));
  }

  // Buckets from the last parameter backwards; a parameter larger than a bucket gets its own.
  const int64_t target = std::max<int64_t>(1, options.bucket_bytes / static_cast<int64_t>(sizeof(float)));
  std::vector<std::vector<int>> groups;
  int64_t filled = 0;
  for (int i = static_cast<int>(slots_.size()) - 1; i >= 0; --i) {
    if (groups.empty() || filled >= target) {
      groups.emplace_back();
      filled = 0;
    }
    groups.back().push_back(i);
    filled += slots_[i].numel;
  }
  int64_t offset = 0;
  for (auto& g : groups) {
    std::reverse(g.begin(), g.end());  // registration order inside the bucket
    Bucket b;
    b.begin = offset;
    for (int i : g) {
      slots_[i].physical = offset;
      slots_[i].bucket = static_cast<int>(buckets_.size());
      offset += slots_[i].numel;
      b.slots.push_back(i);
    }
    b.end = b.begin + round_up(offset - b.begin, kAlign * world_);
    b.piece = (b.end - b.begin) / world_;
    offset = b.end;
    buckets_.push_back(std::move(b));
  }

  auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  params_ = torch::zeros({offset}, opts);
  grads_ = torch::zeros({offset}, opts);
  torch::NoGradGuard no_grad;
  for (auto& s : slots_) {
    auto view = params_.narrow(0, s.physical, s.numel).view(s.param.sizes());
    view.copy_(s.param);
    s.param.set_data(view);
    s.param.mutable_grad() = grads_.narrow(0, s.physical, s.numel).view(s.param.sizes());
  }
  by_physical_.resize(slots_.size());
  for (size_t i = 0; i < slots_.size(); ++i) by_physical_[i] = static_cast<int>(i);
  std::sort(by_physical_.begin(), by_physical_.end(),
            [&](int a, int b) { return slots_[a].physical < slots_[b].physical; });
}

std::pair<int64_t, int64_t> FlatParameters::piece(int bucket, int rank) const {
  const Bucket& b = buckets_.at(static_cast<size_t>(bucket));
  return {b.begin + rank * b.piece, b.begin + (rank + 1) * b.piece};
}

std::vector<std::pair<int64_t, int64_t>> FlatParameters::ranges_of(int rank, bool sharded) const {
  check(rank >= 0 && rank < world_, "FlatParameters: rank ", rank, " outside [0, ", world_, ")");
  if (!sharded) return {{0, numel()}};
  std::vector<std::pair<int64_t, int64_t>> out;
  for (size_t b = 0; b < buckets_.size(); ++b) out.push_back(piece(static_cast<int>(b), rank));
  return out;
}

std::vector<Segment> FlatParameters::segments(int64_t begin, int64_t end) const {
  std::vector<Segment> out;
  // First slot that ends after `begin`.
  auto it = std::partition_point(by_physical_.begin(), by_physical_.end(),
                                 [&](int i) { return slots_[i].physical + slots_[i].numel <= begin; });
  for (; it != by_physical_.end(); ++it) {
    const ParamSlot& s = slots_[*it];
    if (s.physical >= end) break;
    const int64_t lo = std::max(begin, s.physical), hi = std::min(end, s.physical + s.numel);
    if (hi > lo) out.push_back({lo, s.logical + (lo - s.physical), hi - lo});
  }
  return out;
}

void FlatParameters::zero_grad() { grads_.zero_(); }

void FlatParameters::check_views() const {
  const auto* pbase = static_cast<const char*>(params_.data_ptr());
  const auto* gbase = static_cast<const char*>(grads_.data_ptr());
  for (const auto& s : slots_) {
    const auto want = static_cast<int64_t>(s.physical * sizeof(float));
    check(s.param.defined() && static_cast<const char*>(s.param.data_ptr()) - pbase == want,
          "parameter ", s.name, " no longer views the flat parameter buffer (was the module re-created or moved?)");
    check(s.param.grad().defined() && static_cast<const char*>(s.param.grad().data_ptr()) - gbase == want,
          "the gradient of ", s.name, " no longer views the flat gradient buffer (was .grad replaced?)");
  }
}

}  // namespace samba::dist
