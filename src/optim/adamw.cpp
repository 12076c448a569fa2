#include "samba/optim/adamw.h"

#include <cmath>
#include <map>

#include "samba/core/error.h"

namespace samba {

AdamW::AdamW(std::vector<std::pair<std::string, torch::Tensor>> named_params, const OptimizerConfig& cfg) : cfg_(cfg) {
  for (auto& [name, p] : named_params) {
    check(p.scalar_type() == torch::kFloat32 || p.scalar_type() == torch::kFloat64, "parameter ", name,
          " must be fp32 master weights, got ", p.scalar_type());
    slots_.push_back({name, p, torch::zeros_like(p, torch::MemoryFormat::Contiguous),
                      torch::zeros_like(p, torch::MemoryFormat::Contiguous)});
  }
}

void AdamW::zero_grad() {
  for (auto& s : slots_) {
    auto& g = s.param.mutable_grad();
    if (g.defined()) g.zero_();
  }
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++step_;
  const double bc1 = 1.0 - std::pow(cfg_.beta1, static_cast<double>(step_));
  const double bc2 = 1.0 - std::pow(cfg_.beta2, static_cast<double>(step_));
  const double step_size = lr / bc1;
  const double inv_sqrt_bc2 = 1.0 / std::sqrt(bc2);
  for (auto& s : slots_) {
    const auto& g = s.param.grad();
    if (!g.defined()) continue;
    // Decoupled weight decay (applied to all parameters, as in the paper's recipe).
    if (cfg_.weight_decay > 0) s.param.mul_(1.0 - lr * cfg_.weight_decay);
    s.exp_avg.mul_(cfg_.beta1).add_(g, 1.0 - cfg_.beta1);
    s.exp_avg_sq.mul_(cfg_.beta2).addcmul_(g, g, 1.0 - cfg_.beta2);
    auto denom = (s.exp_avg_sq.sqrt() * inv_sqrt_bc2).add_(cfg_.eps);
    s.param.addcdiv_(s.exp_avg, denom, -step_size);
  }
}

std::vector<std::pair<std::string, torch::Tensor>> AdamW::state() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& s : slots_) {
    out.emplace_back(s.name + ".exp_avg", s.exp_avg);
    out.emplace_back(s.name + ".exp_avg_sq", s.exp_avg_sq);
  }
  out.emplace_back("__step__", torch::tensor({step_}, torch::kLong));
  return out;
}

void AdamW::load_state(const std::vector<std::pair<std::string, torch::Tensor>>& state, const std::string& origin) {
  std::map<std::string, torch::Tensor> by_name(state.begin(), state.end());
  auto take = [&](const std::string& key, torch::Tensor& into) {
    auto it = by_name.find(key);
    check(it != by_name.end(), origin, ": optimizer state has no '", key,
          "': the checkpoint was written for a different model");
    check(it->second.sizes() == into.sizes(), origin, ": optimizer state '", key, "' has shape ", it->second.sizes(),
          ", the model needs ", into.sizes());
    torch::NoGradGuard no_grad;
    into.copy_(it->second);
  };
  for (auto& s : slots_) {
    take(s.name + ".exp_avg", s.exp_avg);
    take(s.name + ".exp_avg_sq", s.exp_avg_sq);
  }
  auto it = by_name.find("__step__");
  check(it != by_name.end(), origin, ": optimizer state has no step counter");
  step_ = it->second.item<int64_t>();
}

double learning_rate(const OptimizerConfig& cfg, int64_t step, int64_t total_steps) {
  const int64_t warmup = static_cast<int64_t>(std::ceil(cfg.warmup_fraction * static_cast<double>(total_steps)));
  if (step < warmup) return cfg.lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const double span = static_cast<double>(std::max<int64_t>(1, total_steps - warmup));
  const double progress = std::min(1.0, static_cast<double>(step - warmup) / span);
  return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + std::cos(M_PI * progress));
}

double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> norms;
  for (const auto& p : params)
    if (p.grad().defined()) norms.push_back(p.grad().to(torch::kFloat32).norm(2).unsqueeze(0));
  if (norms.empty()) return 0.0;
  const double total = torch::cat(norms).norm(2).item<double>();
  if (max_norm > 0 && std::isfinite(total) && total > max_norm) {
    const double scale = max_norm / (total + 1e-6);
    for (const auto& p : params)
      if (p.grad().defined()) p.grad().mul_(scale);
  }
  return total;
}

}  // namespace samba
