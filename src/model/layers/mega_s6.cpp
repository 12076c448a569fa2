// Mega-S6: the layer's math, as read from the reference (microsoft/Samba lit_gpt/mega.py and
// lit_gpt/s6.py) and the Mega paper's single-head gated attention. x is the normalised input
// (B, T, d); d = d_model, z = z_dim (128), h = hidden (= d), N = d_state (16),
// K = d_conv (4), R = dt_rank = ceil(d / 32).
//
//   S6 (replaces Mega's multi-dimensional damped EMA; d channels, no expansion, no in/out
//   projection, no z gate):
//     c      = silu(causal depthwise conv_K(x) + conv bias)              (B, T, d)
//     dt|B|C = x_proj(c), widths R | N | N, no bias
//     delta  = softplus(W_dt dt + b_dt)                                   (B, T, d)
//     s_t    = exp(delta_t A) s_{t-1} + delta_t B_t c_t,  A = -exp(A_log)  (per channel, N states)
//     y_t    = C_t . s_t + D c_t
//   mx   = silu(y)                                  the "moving average" signal
//   v    = silu(v_proj(x))                          (B, T, h), with bias
//   base = mx_proj(mx), with bias, split into widths d | z | h | d:
//     u  = sigmoid(base_1)                          update gate (how much of the layer to write)
//     zq = silu(base_2),  r = silu(base_3)          shared q/k code and the reset gate
//     hx = base_4                                   linear path from mx straight to the output
//   q = zq * gamma_0 + beta_0,  k = zq * gamma_1 + beta_1   (per-channel affine, 2 x z each)
//   Attention, one head, causal softmax restricted to chunks of `chunk` tokens (the chunk
//   starts are 0, chunk, 2 chunk, ...; a shorter sequence is one chunk):
//     score(i, j) = q_i . k_j / sqrt(z) + bias(i - j)   for j in chunk(i), j <= i
//     bias(i, j)  = rot_i(alpha) . rot_j(beta): alpha, beta (z) learned, rot_p rotates the
//                   channel pairs (c, c + z/2) by angle p * 10000^(-c / (z/2)), positions
//                   counted from the chunk start, so it is a relative-position bias
//     a_i = sum_j softmax_j(score(i, .)) v_j                               (B, T, h)
//   h   = silu(hx + h_proj(a * r))                  h_proj with bias, h -> d
//   Block (the reference's highway mix, lit_gpt/mega.py): x_next = x_raw + u * (h - x_raw),
//   where x_raw is the stream before the norm. The layer therefore owns its residual
//   (residual_forward / residual_step, see sublayer.h); the stack's pre-norm is the
//   reference's self.norm inside the block, and a plain forward() has no meaning.
//
// Parameters per layer (norm excluded, it is the stack's norm = the reference's self.norm):
// conv d*K + d, x_proj d*(R+2N), dt_proj R*d + d, A_log d*N, D d,
// v_proj d*h + h, mx_proj d*(2d+z+h) + (2d+z+h), h_proj h*d + d, gamma/beta 4z, alpha/beta 2z.
// d=1536, z=128, h=1536: 12,233,600 per mixer; 12 x (mixer + MLP + 2 norms) + tied embedding
// + final norm = 422,486,016 (the paper's 422M).
//
// Initialisation (reference reset_parameters + mamba_init, samba-spec.md section 3): v_proj,
// mx_proj, h_proj ~ N(0, 0.02) with zero biases, h_proj NOT divided by sqrt(r * n_blocks);
// gamma ~ N(0, 0.02), beta = 0; alpha, beta of the relative bias ~ N(0, 0.02); the S6 keeps
// Mamba's init. Under TinyLlama init every linear is N(0, sqrt(2 / 5d)) (none of them is a
// residual-output projection by the reference's naming).
#include "samba/model/layers/mega_s6.h"

#include <cmath>

#include "samba/core/error.h"
#include "samba/kernels/causal_conv1d.h"
#include "samba/kernels/selective_scan.h"

namespace samba {
namespace {

namespace F = torch::nn::functional;

constexpr int64_t kDtRankDivisor = 32;
constexpr double kRotaryBase = 10000.0;
constexpr double kSmallInitStd = 0.02;

// Softmax and the recurrence never run below fp32; fp64 stays fp64 (tests).
torch::ScalarType compute_dtype(const torch::Tensor& t) {
  return t.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

// vec (z) rotated to each of `positions` (n): (n, z), pairs (c, c + z/2) turned together.
torch::Tensor rotate_to_positions(const torch::Tensor& vec, const torch::Tensor& positions) {
  const int64_t half = vec.size(0) / 2;
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64).device(vec.device());
  auto freq = torch::exp(torch::arange(half, f64) * (-std::log(kRotaryBase) / static_cast<double>(half)));
  auto angle = positions.to(torch::kFloat64).unsqueeze(1) * freq.unsqueeze(0);
  auto sin = angle.sin().to(vec.scalar_type());
  auto cos = angle.cos().to(vec.scalar_type());
  auto x1 = vec.slice(0, 0, half).unsqueeze(0);
  auto x2 = vec.slice(0, half).unsqueeze(0);
  return torch::cat({x1 * cos - x2 * sin, x2 * cos + x1 * sin}, 1);
}

// Average keys a query sees when causal attention restarts every `chunk` tokens.
double mean_chunk_keys(int64_t context, int64_t chunk) {
  if (context <= 0) return 0.0;
  const double c = static_cast<double>(std::min(chunk, context));
  const int64_t full = context / static_cast<int64_t>(c);
  const double rem = static_cast<double>(context - full * static_cast<int64_t>(c));
  return (static_cast<double>(full) * c * (c + 1) / 2 + rem * (rem + 1) / 2) / static_cast<double>(context);
}

}  // namespace

MegaS6Dims MegaS6Dims::from_config(const ModelConfig& cfg) {
  MegaS6Dims d;
  d.d_model = cfg.d_model;
  d.z_dim = cfg.mega.resolved_z_dim(cfg.d_model);
  d.hidden = cfg.mega.hidden_expand * cfg.d_model;
  d.chunk = cfg.mega.chunk_size;
  d.d_state = cfg.mamba.d_state;
  d.d_conv = cfg.mamba.d_conv;
  d.dt_rank = (cfg.d_model + kDtRankDivisor - 1) / kDtRankDivisor;
  d.conv_bias = cfg.mamba.conv_bias;
  check(d.z_dim % 2 == 0, "mega.z_dim must be even (rotary relative bias), got ", d.z_dim);
  check(d.chunk > 0, "mega.chunk_size must be positive, got ", d.chunk);
  return d;
}

MegaS6Impl::MegaS6Impl(const ModelConfig& cfg)
    : SublayerImpl("MegaS6"),
      dims(MegaS6Dims::from_config(cfg)),
      dt_min(cfg.mamba.dt_min),
      dt_max(cfg.mamba.dt_max),
      dt_init_floor(cfg.mamba.dt_init_floor) {
  const int64_t d = dims.d_model, z = dims.z_dim, h = dims.hidden, n = dims.d_state;
  using torch::nn::Linear;
  using torch::nn::LinearOptions;
  conv1d = register_module(
      "conv1d", torch::nn::Conv1d(torch::nn::Conv1dOptions(d, d, dims.d_conv).groups(d).bias(dims.conv_bias)));
  x_proj = register_module("x_proj", Linear(LinearOptions(d, dims.dt_rank + 2 * n).bias(false)));
  dt_proj = register_module("dt_proj", Linear(LinearOptions(dims.dt_rank, d).bias(true)));
  A_log = register_parameter("A_log", torch::empty({d, n}));
  D = register_parameter("D", torch::empty({d}));
  v_proj = register_module("v_proj", Linear(LinearOptions(d, h).bias(true)));
  mx_proj = register_module("mx_proj", Linear(LinearOptions(d, dims.mx_width()).bias(true)));
  h_proj = register_module("h_proj", Linear(LinearOptions(h, d).bias(true)));
  qk_gamma = register_parameter("qk_gamma", torch::empty({2, z}));
  qk_beta = register_parameter("qk_beta", torch::empty({2, z}));
  rel_pos_alpha = register_parameter("rel_pos_alpha", torch::empty({z}));
  rel_pos_beta = register_parameter("rel_pos_beta", torch::empty({z}));
  init_parameters(InitSpec{});
}

void MegaS6Impl::init_parameters(const InitSpec& spec) {
  torch::NoGradGuard no_grad;
  for (auto* l : {&v_proj, &mx_proj, &h_proj}) {
    if (spec.scheme == InitScheme::TinyLlama) {
      init_input_projection(*l, spec);
    } else {
      (*l)->weight.normal_(0.0, kSmallInitStd);
      (*l)->bias.zero_();
    }
  }
  init_input_projection(x_proj, spec);

  // The conv keeps PyTorch's default (as in the reference, whose init only touches Linears).
  const double conv_bound = 1.0 / std::sqrt(static_cast<double>(dims.d_conv));
  torch::nn::init::kaiming_uniform_(conv1d->weight, std::sqrt(5.0));
  if (conv1d->bias.defined()) conv1d->bias.uniform_(-conv_bound, conv_bound);

  // Mamba's dt init: dt_proj(dt) starts small, and softplus(bias) is log-uniform in
  // [dt_min, dt_max] so channels start with a spread of time scales.
  const double dt_std = 1.0 / std::sqrt(static_cast<double>(dims.dt_rank));
  dt_proj->weight.uniform_(-dt_std, dt_std);
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  auto dt = torch::exp(torch::rand({dims.d_model}, f64) * (std::log(dt_max) - std::log(dt_min)) + std::log(dt_min))
                .clamp_min(dt_init_floor);
  dt_proj->bias.copy_(dt + torch::log(-torch::expm1(-dt)));

  // S4D-real: A[e, n] = -(n + 1).
  A_log.copy_(torch::log(torch::arange(1, dims.d_state + 1, f64)).unsqueeze(0).expand({dims.d_model, dims.d_state}));
  D.fill_(1.0);

  qk_gamma.normal_(0.0, kSmallInitStd);
  qk_beta.zero_();
  rel_pos_alpha.normal_(0.0, kSmallInitStd);
  rel_pos_beta.normal_(0.0, kSmallInitStd);
}

torch::Tensor MegaS6Impl::relative_position_bias(int64_t n) const {
  auto pos = torch::arange(n, torch::TensorOptions().dtype(torch::kFloat64).device(rel_pos_alpha.device()));
  return torch::matmul(rotate_to_positions(rel_pos_alpha, pos), rotate_to_positions(rel_pos_beta, pos).t());
}

MegaS6Impl::Projected MegaS6Impl::project(const torch::Tensor& s6_out) {
  const int64_t d = dims.d_model, z = dims.z_dim, h = dims.hidden;
  auto base = mx_proj->forward(torch::silu(s6_out));
  Projected p;
  p.u = torch::sigmoid(base.narrow(-1, 0, d));
  auto zr = torch::silu(base.narrow(-1, d, z + h));
  auto zq = zr.narrow(-1, 0, z);
  p.r = zr.narrow(-1, z, h);
  p.hx = base.narrow(-1, d + z + h, d);
  p.q = zq * qk_gamma[0] + qk_beta[0];
  p.k = zq * qk_gamma[1] + qk_beta[1];
  return p;
}

torch::Tensor MegaS6Impl::finish(const Projected& p, const torch::Tensor& attended) {
  return torch::silu(p.hx + h_proj->forward(attended * p.r));
}

// x + u * (h - x) in the stream's dtype (the reference's torch.addcmul).
torch::Tensor MegaS6Impl::highway(const torch::Tensor& x, const torch::Tensor& u, const torch::Tensor& h) {
  const auto dt = x.scalar_type();
  return torch::addcmul(x, u.to(dt), h.to(dt) - x);
}

torch::Tensor MegaS6Impl::forward(const torch::Tensor&) {
  fail("Mega-S6 mixes the raw residual stream (x + u * (h - x)); call residual_forward(x, norm), not forward()");
}

torch::Tensor MegaS6Impl::step(const torch::Tensor&, LayerState&) {
  fail("Mega-S6 mixes the raw residual stream; call residual_step(x, norm, state), not step()");
}

torch::Tensor MegaS6Impl::residual_forward(const torch::Tensor& x_raw, RMSNormImpl& norm) {
  check(x_raw.dim() == 3 && x_raw.size(2) == dims.d_model, "MegaS6 expects (batch, time, ", dims.d_model,
        "), got ", x_raw.sizes());
  Projected p;
  auto h = mix(norm.forward(x_raw), p);
  return highway(x_raw, p.u, h);
}

torch::Tensor MegaS6Impl::residual_step(const torch::Tensor& x_raw, RMSNormImpl& norm, LayerState& state) {
  Projected p;
  auto h = mix_step(norm.forward(x_raw), state, p);  // (B, 1, d); the gate is per token (B, d)
  return highway(x_raw, p.u.unsqueeze(1), h);
}

torch::Tensor MegaS6Impl::mix(const torch::Tensor& x, Projected& p) {
  const int64_t batch = x.size(0), T = x.size(1);

  // S6 over the whole sequence, channels-first as the scan kernel wants.
  auto xc = kernels::causal_conv1d(x.transpose(1, 2).contiguous(), conv1d->weight.squeeze(1), conv1d->bias,
                                   /*silu=*/true);  // (B, d, T)
  auto x_dbl = x_proj->forward(xc.transpose(1, 2));                                   // (B, T, R+2N)
  auto dt = x_dbl.narrow(-1, 0, dims.dt_rank);
  auto Bm = x_dbl.narrow(-1, dims.dt_rank, dims.d_state).transpose(1, 2).contiguous();
  auto Cm = x_dbl.narrow(-1, dims.dt_rank + dims.d_state, dims.d_state).transpose(1, 2).contiguous();
  auto delta = F::linear(dt, dt_proj->weight).transpose(1, 2).contiguous();  // bias goes in as delta_bias
  auto A = -torch::exp(A_log.to(compute_dtype(x)));
  auto y = kernels::selective_scan(xc.contiguous(), delta, A, Bm, Cm, D.to(compute_dtype(x)), torch::Tensor(),
                                   dt_proj->bias.to(compute_dtype(x)), /*delta_softplus=*/true);

  p = project(y.transpose(1, 2));
  auto v = torch::silu(v_proj->forward(x));

  // Chunked causal attention: pad to whole chunks (padding sits after every real query of
  // its chunk, so the causal mask already hides it) and attend within each chunk.
  const int64_t C = std::min(dims.chunk, T);
  const int64_t n_chunks = (T + C - 1) / C, pad = n_chunks * C - T;
  auto to_chunks = [&](const torch::Tensor& t) {
    auto padded = pad > 0 ? F::pad(t, F::PadFuncOptions({0, 0, 0, pad})) : t;
    return padded.reshape({batch, n_chunks, C, t.size(-1)});
  };
  auto q = to_chunks(p.q) * (1.0 / std::sqrt(static_cast<double>(dims.z_dim)));
  auto scores = torch::matmul(q, to_chunks(p.k).transpose(-1, -2)) + relative_position_bias(C).to(q.scalar_type());
  auto future = torch::ones({C, C}, torch::TensorOptions().dtype(torch::kBool).device(x.device())).triu(1);
  scores = scores.masked_fill(future, -std::numeric_limits<double>::infinity());
  auto probs = torch::softmax(scores, -1, compute_dtype(scores)).to(v.scalar_type());
  auto attended = torch::matmul(probs, to_chunks(v)).reshape({batch, n_chunks * C, dims.hidden}).narrow(1, 0, T);
  return finish(p, attended);
}

std::unique_ptr<LayerState> MegaS6Impl::make_state(int64_t batch, const torch::TensorOptions& options) {
  auto s = std::make_unique<MegaS6State>();
  s->conv = torch::zeros({batch, dims.d_model, dims.d_conv - 1}, options);
  auto state_dtype = options.dtype() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  s->ssm = torch::zeros({batch, dims.d_model, dims.d_state}, options.dtype(state_dtype));
  s->k_cache = torch::zeros({batch, dims.chunk, dims.z_dim}, options);
  s->v_cache = torch::zeros({batch, dims.chunk, dims.hidden}, options);
  return s;
}

torch::Tensor MegaS6Impl::mix_step(const torch::Tensor& x, LayerState& state, Projected& p) {
  auto* s = dynamic_cast<MegaS6State*>(&state);
  check(s != nullptr, "MegaS6::step was given another layer's state");
  check(x.dim() == 3 && x.size(1) == 1 && x.size(2) == dims.d_model, "MegaS6::step expects (batch, 1, ",
        dims.d_model, "), got ", x.sizes());
  auto xt = x.squeeze(1);  // (B, d)

  auto xc = kernels::causal_conv1d_update(xt, s->conv, conv1d->weight.squeeze(1), conv1d->bias, /*silu=*/true);

  auto x_dbl = x_proj->forward(xc);
  auto dt = F::linear(x_dbl.narrow(-1, 0, dims.dt_rank), dt_proj->weight);
  auto Bm = x_dbl.narrow(-1, dims.dt_rank, dims.d_state);
  auto Cm = x_dbl.narrow(-1, dims.dt_rank + dims.d_state, dims.d_state);
  auto cdt = s->ssm.scalar_type();
  auto y = kernels::selective_state_update(s->ssm, xc, dt, -torch::exp(A_log.to(cdt)), Bm, Cm, D.to(cdt),
                                           torch::Tensor(), dt_proj->bias.to(cdt), /*dt_softplus=*/true);

  p = project(y);
  auto v = torch::silu(v_proj->forward(xt));

  // A new chunk forgets every earlier key: attention restarts at chunk boundaries.
  const int64_t pos = s->position % dims.chunk;
  s->k_cache.select(1, pos).copy_(p.k);
  s->v_cache.select(1, pos).copy_(v);
  auto keys = s->k_cache.narrow(1, 0, pos + 1);
  auto values = s->v_cache.narrow(1, 0, pos + 1);
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64).device(x.device());
  auto bias_row = torch::matmul(rotate_to_positions(rel_pos_alpha, torch::full({1}, static_cast<double>(pos), f64)),
                                rotate_to_positions(rel_pos_beta, torch::arange(pos + 1, f64)).t());  // (1, pos+1)
  auto q = p.q * (1.0 / std::sqrt(static_cast<double>(dims.z_dim)));
  auto scores = torch::matmul(q.unsqueeze(1), keys.transpose(1, 2)) + bias_row.to(q.scalar_type());  // (B, 1, pos+1)
  auto probs = torch::softmax(scores, -1, compute_dtype(scores)).to(values.scalar_type());
  auto attended = torch::matmul(probs, values).squeeze(1);  // (B, h)
  s->position += 1;
  return finish(p, attended).unsqueeze(1);
}

SublayerSpec mega_s6_spec() {
  SublayerSpec s;
  s.symbol = layer_char::kMegaS6;
  s.make = [](const ModelConfig& cfg, int64_t) {
    return std::static_pointer_cast<SublayerImpl>(std::make_shared<MegaS6Impl>(cfg));
  };
  s.num_params = [](const ModelConfig& cfg) {
    const MegaS6Dims m = MegaS6Dims::from_config(cfg);
    const int64_t d = m.d_model, z = m.z_dim, h = m.hidden, n = m.d_state, r = m.dt_rank;
    const int64_t s6 = d * m.d_conv + (m.conv_bias ? d : 0) + d * (r + 2 * n) + (r * d + d) + d * n + d;
    const int64_t gated = (d * h + h) + (d * m.mx_width() + m.mx_width()) + (h * d + d) + 4 * z + 2 * z;
    return s6 + gated;
  };
  s.forward_flops_per_token = [](const ModelConfig& cfg, int64_t context) {
    const MegaS6Dims m = MegaS6Dims::from_config(cfg);
    const double d = static_cast<double>(m.d_model), z = static_cast<double>(m.z_dim), h = static_cast<double>(m.hidden);
    const double n = static_cast<double>(m.d_state), r = static_cast<double>(m.dt_rank);
    const double matmul_macs = d * h + d * (r + 2 * n) + r * d + d * static_cast<double>(m.mx_width()) + h * d;
    const double conv_macs = d * static_cast<double>(m.d_conv);
    const double scan_macs = 3.0 * d * n;  // decay, input and readout per state element
    const double attn_macs = (z + h) * mean_chunk_keys(context, m.chunk);
    return 2.0 * (matmul_macs + conv_macs + scan_macs + attn_macs);
  };
  s.saved_activations_per_token = [](const ModelConfig& cfg) {
    const MegaS6Dims m = MegaS6Dims::from_config(cfg);
    const double d = static_cast<double>(m.d_model), z = static_cast<double>(m.z_dim), h = static_cast<double>(m.hidden);
    const double s6 = 4 * d + static_cast<double>(m.dt_rank + 2 * m.d_state);  // conv out, delta, y, mx + x_dbl
    const double gates = static_cast<double>(m.mx_width()) + 2 * z + 3 * h;    // base, q, k, v (pre/post), r
    const double attn = mean_chunk_keys(cfg.seq_len, m.chunk) + h;             // probabilities, attended
    return d + s6 + gates + attn + 3 * d;                                       // input; h_proj out, out, u
  };
  return s;
}

}  // namespace samba
