#include "samba/model/layers/mamba.h"

#include <cmath>

#include "samba/core/error.h"
#include "samba/kernels/causal_conv1d.h"
#include "samba/kernels/selective_scan.h"

namespace samba {

MambaImpl::MambaImpl(int64_t d_model_, const MambaConfig& cfg, int64_t dt_rank_)
    : SublayerImpl("Mamba"),
      d_model(d_model_),
      d_inner(cfg.expand * d_model_),
      d_state(cfg.d_state),
      d_conv(cfg.d_conv),
      dt_rank(dt_rank_),
      options(cfg) {
  check(d_model > 0 && d_inner > 0 && d_state > 0 && d_conv > 0 && dt_rank > 0,
        "Mamba: d_model, expand, d_state, d_conv and dt_rank must be positive (d_model ", d_model, ", expand ",
        cfg.expand, ", d_state ", d_state, ", d_conv ", d_conv, ", dt_rank ", dt_rank, ")");
  using torch::nn::LinearOptions;
  in_proj = register_module("in_proj", torch::nn::Linear(LinearOptions(d_model, 2 * d_inner).bias(cfg.proj_bias)));
  // Padding is ours (causal_conv1d pads on the left only); the module just owns the
  // parameters in PyTorch's Conv1d layout and default init.
  conv1d = register_module("conv1d", torch::nn::Conv1d(torch::nn::Conv1dOptions(d_inner, d_inner, d_conv)
                                                           .groups(d_inner)
                                                           .padding(0)
                                                           .bias(cfg.conv_bias)));
  x_proj = register_module("x_proj", torch::nn::Linear(LinearOptions(d_inner, dt_rank + 2 * d_state).bias(false)));
  dt_proj = register_module("dt_proj", torch::nn::Linear(LinearOptions(dt_rank, d_inner).bias(true)));
  A_log = register_parameter("A_log", torch::empty({d_inner, d_state}));
  D = register_parameter("D", torch::empty({d_inner}));
  out_proj = register_module("out_proj", torch::nn::Linear(LinearOptions(d_inner, d_model).bias(cfg.proj_bias)));
  init_parameters(InitSpec{});
}

void MambaImpl::init_parameters(const InitSpec& spec) {
  torch::NoGradGuard no_grad;
  init_input_projection(in_proj, spec);
  init_input_projection(x_proj, spec);
  conv1d->reset_parameters();
  // dt_proj keeps Mamba's own init under every scheme: the dt bias sets each channel's
  // time scale, which a generic re-init would destroy.
  const double bound = 1.0 / std::sqrt(static_cast<double>(dt_rank));
  dt_proj->weight.uniform_(-bound, bound);
  const double lo = std::log(options.dt_min), hi = std::log(options.dt_max);
  auto dt = torch::exp(torch::rand({d_inner}, torch::kFloat64) * (hi - lo) + lo).clamp_min(options.dt_init_floor);
  // Inverse of softplus, so that softplus(bias) = dt at init.
  dt_proj->bias.copy_(dt + torch::log(-torch::expm1(-dt)));
  // S4D-real: A[e, n] = -(n + 1).
  A_log.copy_(torch::log(torch::arange(1, d_state + 1, torch::kFloat64)).expand({d_inner, d_state}));
  D.fill_(1.0);
  init_output_projection(out_proj, spec);
}

torch::Tensor MambaImpl::forward(const torch::Tensor& x) { return forward_impl(x, nullptr); }

torch::Tensor MambaImpl::prefill(const torch::Tensor& x, MambaState& state) { return forward_impl(x, &state); }

namespace {
// A stays fp32 (fp64 in fp64 models) even when the weights are bf16: its exponent sets
// decay rates that bf16 would round visibly.
torch::Tensor state_matrix(const torch::Tensor& A_log) {
  return -torch::exp(A_log.scalar_type() == torch::kFloat64 ? A_log : A_log.to(torch::kFloat32));
}
torch::Tensor maybe(const torch::Tensor& t) { return t.defined() ? t : torch::Tensor(); }
}  // namespace

torch::Tensor MambaImpl::forward_impl(const torch::Tensor& x, MambaState* state) {
  check(x.dim() == 3 && x.size(2) == d_model, "Mamba: input must be (batch, time, d_model=", d_model, "), got ",
        x.sizes());
  const int64_t batch = x.size(0);
  // split, not narrow: the backward of a split is one concatenation of the parts' gradients;
  // that of a narrow writes a zero-filled full-size tensor per part and adds them up.
  auto xz = in_proj(x).split(d_inner, -1);  // 2 x (B, T, E)
  auto xs = xz[0].transpose(1, 2);          // (B, E, T): the scan's channel-major layout
  auto z = xz[1].transpose(1, 2);
  auto conv_w = conv1d->weight.squeeze(1);  // (E, K)
  auto xc = kernels::causal_conv1d(xs, conv_w, maybe(conv1d->bias), /*silu=*/true);  // (B, E, T)
  auto x_dbl = x_proj(xc.transpose(1, 2)).split_with_sizes({dt_rank, d_state, d_state}, -1);  // (B, T, R | N | N)
  auto dt = x_dbl[0];
  auto Bm = x_dbl[1].transpose(1, 2);  // (B, N, T)
  auto Cm = x_dbl[2].transpose(1, 2);  // (B, N, T)
  // The dt bias is applied inside the scan, before the softplus (as mamba_ssm does).
  auto delta = torch::nn::functional::linear(dt, dt_proj->weight).transpose(1, 2);  // (B, E, T)
  auto A = state_matrix(A_log);
  torch::Tensor y;
  if (state) {
    check(state->conv.defined() && state->conv.size(0) == batch, "Mamba: state was made for another batch size");
    auto [out, last] = kernels::selective_scan_with_state(xc, delta, A, Bm, Cm, D, z, dt_proj->bias, true);
    y = out;
    torch::NoGradGuard no_grad;
    state->ssm.copy_(last);
    state->conv.copy_(kernels::causal_conv1d_final_state(xs, d_conv));
  } else {
    y = kernels::selective_scan(xc, delta, A, Bm, Cm, D, z, dt_proj->bias, true);
  }
  return out_proj(y.transpose(1, 2));
}

std::unique_ptr<LayerState> MambaImpl::make_state(int64_t batch, const torch::TensorOptions& opts) {
  auto s = std::make_unique<MambaState>();
  s->conv = torch::zeros({batch, d_inner, d_conv - 1}, opts);
  const auto ssm_dtype = opts.dtype() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  s->ssm = torch::zeros({batch, d_inner, d_state}, opts.dtype(ssm_dtype));
  return s;
}

torch::Tensor MambaImpl::step(const torch::Tensor& x, LayerState& state) {
  auto* st = dynamic_cast<MambaState*>(&state);
  check(st != nullptr, "Mamba: step() needs the state made by this layer's make_state()");
  check(x.dim() == 3 && x.size(1) == 1 && x.size(2) == d_model, "Mamba: step input must be (batch, 1, d_model=",
        d_model, "), got ", x.sizes());
  check(st->ssm.size(0) == x.size(0), "Mamba: state batch ", st->ssm.size(0), " != input batch ", x.size(0));
  auto xz = in_proj(x.squeeze(1));  // (B, 2E)
  auto xs = xz.narrow(1, 0, d_inner);
  auto z = xz.narrow(1, d_inner, d_inner);
  auto xc = kernels::causal_conv1d_update(xs, st->conv, conv1d->weight.squeeze(1), maybe(conv1d->bias), true);
  auto x_dbl = x_proj(xc);
  auto dt = x_dbl.narrow(-1, 0, dt_rank);
  auto Bm = x_dbl.narrow(-1, dt_rank, d_state);
  auto Cm = x_dbl.narrow(-1, dt_rank + d_state, d_state);
  auto delta = torch::nn::functional::linear(dt, dt_proj->weight);
  auto y = kernels::selective_state_update(st->ssm, xc, delta, state_matrix(A_log), Bm, Cm, D, z, dt_proj->bias, true);
  return out_proj(y).unsqueeze(1);
}

// Counting from the config alone (samba inspect). E = expand d, R = dt_rank, N = d_state,
// K = d_conv.
SublayerSpec mamba_spec() {
  SublayerSpec s;
  s.symbol = layer_char::kMamba;
  s.make = [](const ModelConfig& cfg, int64_t) {
    return std::static_pointer_cast<SublayerImpl>(std::make_shared<MambaImpl>(cfg));
  };
  s.num_params = [](const ModelConfig& cfg) {
    const int64_t d = cfg.d_model, E = cfg.mamba.expand * d, R = cfg.mamba_dt_rank(), N = cfg.mamba.d_state,
                  K = cfg.mamba.d_conv;
    const int64_t proj_bias = cfg.mamba.proj_bias ? 1 : 0, conv_bias = cfg.mamba.conv_bias ? 1 : 0;
    return d * 2 * E + proj_bias * 2 * E  // in_proj
           + E * K + conv_bias * E        // conv1d
           + E * (R + 2 * N)              // x_proj
           + R * E + E                    // dt_proj
           + E * N + E                    // A_log, D
           + E * d + proj_bias * d;       // out_proj
  };
  // Projections: 2 FLOPs per MAC. Conv: K MACs per channel. Scan, per channel and state:
  // decay exp(dt A) (mul + exp), h = decay h + (dt u) B (2 mul + add), y += C h (mul + add)
  // = 7 counting exp as one FLOP; we count 9 because exp costs several. Per channel also
  // softplus, the D skip and the silu(z) gate, ~ 10. Context length does not matter.
  s.forward_flops_per_token = [](const ModelConfig& cfg, int64_t) {
    const double d = static_cast<double>(cfg.d_model), E = static_cast<double>(cfg.mamba.expand * cfg.d_model),
                 R = static_cast<double>(cfg.mamba_dt_rank()), N = static_cast<double>(cfg.mamba.d_state),
                 K = static_cast<double>(cfg.mamba.d_conv);
    const double projections = 2.0 * (d * 2 * E + E * (R + 2 * N) + R * E + E * d);
    return projections + 2.0 * E * K + 9.0 * E * N + 10.0 * E;
  };
  // What autograd keeps per token: the layer input (d), in_proj output x and z (2E), conv
  // output (E), x_proj output (R + 2N), delta (E), the scan output (E) and the out_proj input
  // (E). The fast scan stores no states (it recomputes them in backward).
  s.saved_activations_per_token = [](const ModelConfig& cfg) {
    const double d = static_cast<double>(cfg.d_model), E = static_cast<double>(cfg.mamba.expand * cfg.d_model);
    return d + 6.0 * E + static_cast<double>(cfg.mamba_dt_rank() + 2 * cfg.mamba.d_state);
  };
  return s;
}

}  // namespace samba
