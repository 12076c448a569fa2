#include "samba/optim/adamw.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "samba/core/error.h"

#ifdef SAMBA_WITH_CUDA
#include <c10/cuda/CUDAStream.h>

#include "../kernels/adamw/adamw_cuda.h"
#endif

namespace samba {

AdamW::AdamW(dist::FlatParameters& flat, std::vector<std::pair<int64_t, int64_t>> ranges, const OptimizerConfig& cfg)
    : flat_(flat), ranges_(std::move(ranges)), cfg_(cfg) {
  int64_t total = 0;
  for (const auto& [lo, hi] : ranges_) {
    check(0 <= lo && lo <= hi && hi <= flat.numel(), "AdamW: range [", lo, ", ", hi, ") outside the flat buffer of ",
          flat.numel());
    range_offset_.push_back(total);
    total += hi - lo;
  }
  exp_avg_ = torch::zeros({total}, flat.params().options());
  exp_avg_sq_ = torch::zeros({total}, flat.params().options());
  updates_ = torch::zeros({}, flat.params().options().dtype(torch::kFloat64));
}

int64_t AdamW::steps_taken() const { return static_cast<int64_t>(updates_.item<double>()); }

torch::Tensor AdamW::grad_sq_sum() const {
  torch::NoGradGuard no_grad;
  auto sum = torch::zeros({}, flat_.grads().options());
  for (const auto& [lo, hi] : ranges_) {
    auto g = flat_.grads().narrow(0, lo, hi - lo);
    sum += g.dot(g);
  }
  return sum;
}

void AdamW::step(double lr, double grad_scale) {
  torch::NoGradGuard no_grad;
  auto control = torch::tensor({grad_scale, 1.0}, torch::kFloat64).to(updates_.device());
  step(lr, control);
}

void AdamW::step(double lr, const torch::Tensor& control) {
  torch::NoGradGuard no_grad;
  check(control.numel() == 2 && control.device() == updates_.device(),
        "AdamW::step: control must be {grad_scale, apply} on the parameters' device");
  // Bias corrections from the count of applied updates, in float64 on the device:
  //   step_size = lr / (1 - beta1^t), inv_sqrt_bc2 = 1 / sqrt(1 - beta2^t).
  const auto c = control.to(torch::kFloat64);
  const auto apply = (c[1] != 0).to(torch::kFloat64);
  const auto t = updates_ + apply;
  const auto tc = t.clamp_min(1.0);  // a skipped first step: the values are unused
  const auto bc1 = 1.0 - torch::pow(cfg_.beta1, tc), bc2 = 1.0 - torch::pow(cfg_.beta2, tc);
  const auto coeffs = torch::stack({c[0], lr / bc1, bc2.rsqrt(), apply});  // float64, on the device
  updates_.copy_(t);
#ifdef SAMBA_WITH_CUDA
  torch::Tensor coeffs32;
  if (updates_.is_cuda()) coeffs32 = coeffs.to(torch::kFloat32);
#endif
  double host[4] = {0, 0, 0, 0};
  if (!updates_.is_cuda()) {  // the CPU path reads them (no device to wait for)
    std::memcpy(host, coeffs.data_ptr<double>(), sizeof host);
    if (host[3] == 0) return;
  }
  const double grad_scale = host[0], step_size = host[1], inv_sqrt_bc2 = host[2];
  for (size_t i = 0; i < ranges_.size(); ++i) {
    const auto [lo, hi] = ranges_[i];
    auto p = flat_.params().narrow(0, lo, hi - lo);
    auto g = flat_.grads().narrow(0, lo, hi - lo);
    auto m = exp_avg_.narrow(0, range_offset_[i], hi - lo);
    auto v = exp_avg_sq_.narrow(0, range_offset_[i], hi - lo);
#ifdef SAMBA_WITH_CUDA
    if (p.is_cuda()) {
      // One fused pass over the range (the same arithmetic as below, in fp32), its scale,
      // bias corrections and skip flag read on the device.
      kernels::cuda::AdamWArgs a;
      a.param = p.data_ptr<float>();
      a.grad = g.data_ptr<float>();
      a.exp_avg = m.data_ptr<float>();
      a.exp_avg_sq = v.data_ptr<float>();
      a.n = hi - lo;
      a.lr = static_cast<float>(lr);
      a.beta1 = static_cast<float>(cfg_.beta1);
      a.beta2 = static_cast<float>(cfg_.beta2);
      a.eps = static_cast<float>(cfg_.eps);
      a.weight_decay = static_cast<float>(cfg_.weight_decay);
      a.control = coeffs32.data_ptr<float>();
      const char* err = kernels::cuda::adamw_flat(a, c10::cuda::getCurrentCUDAStream(p.device().index()).stream());
      check(err == nullptr, "AdamW CUDA kernel failed: ", err ? err : "");
      continue;
    }
#endif
    if (grad_scale != 1.0) g.mul_(grad_scale);
    // Decoupled weight decay (applied to all parameters, as in the paper's recipe).
    if (cfg_.weight_decay > 0) p.mul_(1.0 - lr * cfg_.weight_decay);
    m.mul_(cfg_.beta1).add_(g, 1.0 - cfg_.beta1);
    v.mul_(cfg_.beta2).addcmul_(g, g, 1.0 - cfg_.beta2);
    auto denom = (v.sqrt() * inv_sqrt_bc2).add_(cfg_.eps);
    p.addcdiv_(m, denom, -step_size);
  }
}

std::vector<SavedOptimizerShard::Span> AdamW::spans() const {
  std::vector<SavedOptimizerShard::Span> out;
  for (size_t i = 0; i < ranges_.size(); ++i) {
    const auto [lo, hi] = ranges_[i];
    for (const auto& seg : flat_.segments(lo, hi))
      out.push_back({seg.logical, seg.length, range_offset_[i] + (seg.physical - lo)});
  }
  return out;
}

void AdamW::load_state(const std::vector<SavedOptimizerShard>& shards, int64_t steps_taken) {
  check(steps_taken >= 0, "optimizer state: negative step count ", steps_taken);
  // Saved spans sorted by logical offset, to find the overlaps of each of ours.
  struct Src {
    int64_t logical, length, offset;
    const SavedOptimizerShard* shard;
  };
  std::vector<Src> srcs;
  for (const auto& s : shards)
    for (const auto& sp : s.spans) srcs.push_back({sp.logical, sp.length, sp.offset, &s});
  std::sort(srcs.begin(), srcs.end(), [](const Src& a, const Src& b) { return a.logical < b.logical; });

  auto m_host = torch::zeros({exp_avg_.numel()}, torch::kFloat32);
  auto v_host = torch::zeros({exp_avg_.numel()}, torch::kFloat32);
  for (const auto& want : spans()) {
    int64_t covered = 0;
    auto it = std::partition_point(srcs.begin(), srcs.end(),
                                   [&](const Src& s) { return s.logical + s.length <= want.logical; });
    for (; it != srcs.end() && it->logical < want.logical + want.length; ++it) {
      const int64_t lo = std::max(want.logical, it->logical);
      const int64_t hi = std::min(want.logical + want.length, it->logical + it->length);
      if (hi <= lo) continue;
      const int64_t src_off = it->offset + (lo - it->logical), dst_off = want.offset + (lo - want.logical);
      it->shard->read("exp_avg", src_off, hi - lo, m_host.data_ptr<float>() + dst_off);
      it->shard->read("exp_avg_sq", src_off, hi - lo, v_host.data_ptr<float>() + dst_off);
      covered += hi - lo;
    }
    check(covered == want.length, "optimizer state: the saved shards",
          shards.empty() ? std::string() : " (" + shards.front().origin + ", ...)", " cover ", covered, " of the ",
          want.length, " moments at logical offset ", want.logical,
          ": the checkpoint was written for a different model or is missing a rank's shard");
  }
  torch::NoGradGuard no_grad;
  exp_avg_.copy_(m_host);
  exp_avg_sq_.copy_(v_host);
  updates_.fill_(static_cast<double>(steps_taken));
}

torch::Tensor clip_scale(const torch::Tensor& norm, double max_norm) {
  auto one = torch::ones_like(norm);
  return max_norm > 0 ? torch::where(norm > max_norm, max_norm / (norm + 1e-6), one) : one;
}

double learning_rate(const OptimizerConfig& cfg, int64_t step, int64_t total_steps) {
  const int64_t warmup = static_cast<int64_t>(std::ceil(cfg.warmup_fraction * static_cast<double>(total_steps)));
  if (step < warmup) return cfg.lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const double span = static_cast<double>(std::max<int64_t>(1, total_steps - warmup));
  const double progress = std::min(1.0, static_cast<double>(step - warmup) / span);
  return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + std::cos(M_PI * progress));
}

}  // namespace samba
