// The fast CPU selective scan: one channel (batch b, channel e) at a time, its N-dim state in
// a local buffer, channels spread over threads with at::parallel_for.
//
// Memory choice for backward: nothing beyond the inputs is saved. Backward re-runs the
// forward recurrence of one channel into per-task buffers of L x N states and decay factors
// (2*L*N values, e.g. 512 KiB at L 4096, N 16 in fp32), then walks time backwards. Storing every state instead
// would cost batch*E*N*L values (N = 16 times the activations of the layer), which is what
// the reference's autograd graph pays; the recompute costs one extra forward.
//
// B and C are shared by all E channels, so their gradients are sums over channels. To stay
// deterministic (bitwise, whatever the thread count) channels are cut into a fixed number of
// groups that depends on the shapes only; each (batch, group) task owns its own slice of a
// partial-sum buffer and the slices are summed afterwards in a fixed order.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "samba/core/error.h"
#include "samba/kernels/selective_scan.h"

namespace samba::kernels {
namespace {

// torch's softplus: linear above the threshold 20 so exp() cannot overflow.
template <typename T>
inline T softplus(T x) {
  return x > T(20) ? x : std::log1p(std::exp(x));
}
template <typename T>
inline T softplus_grad(T x) {
  return x > T(20) ? T(1) : T(1) / (T(1) + std::exp(-x));
}
template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

struct Shape {
  int64_t batch, E, N, L;
  bool softplus;
};

// Raw pointers into compute-dtype, contiguous copies of the inputs. B and C are stored
// transposed, (batch, L, N), so that the N values one time step reads are contiguous.
template <typename T>
struct Inputs {
  const T *u, *delta, *A, *Bt, *Ct, *D, *z, *bias;
};

struct Prepared {
  torch::Tensor u, delta, A, Bt, Ct, D, z, bias;
};

Prepared prepare(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A, const torch::Tensor& B,
                 const torch::Tensor& C, const torch::Tensor& D, const torch::Tensor& z,
                 const torch::Tensor& delta_bias, torch::ScalarType ct) {
  auto conv = [ct](const torch::Tensor& t) { return t.defined() ? t.to(ct).contiguous() : t; };
  return {conv(u), conv(delta), conv(A), B.to(ct).transpose(1, 2).contiguous(), C.to(ct).transpose(1, 2).contiguous(),
          conv(D), conv(z), conv(delta_bias)};
}

template <typename T>
Inputs<T> pointers(const Prepared& p) {
  auto ptr = [](const torch::Tensor& t) -> const T* { return t.defined() ? t.data_ptr<T>() : nullptr; };
  return {ptr(p.u), ptr(p.delta), ptr(p.A), ptr(p.Bt), ptr(p.Ct), ptr(p.D), ptr(p.z), ptr(p.bias)};
}

// Runs the recurrence of channel (b, e). Writes the gated output to `out` (may be null),
// the final state to `h`, and optionally, for backward, every state and decay factor
// (`states`, `decays`, L x N) and the output before the z gate (`y_pre`, L).
template <typename T>
void scan_channel(const Shape& s, const Inputs<T>& in, int64_t b, int64_t e, T* out, T* h, T* states, T* decays,
                  T* y_pre) {
  const int64_t N = s.N, L = s.L;
  const int64_t row = (b * s.E + e) * L;
  const T* u = in.u + row;
  const T* delta = in.delta + row;
  const T* z = in.z ? in.z + row : nullptr;
  const T* A = in.A + e * N;
  const T* Bt = in.Bt + b * L * N;
  const T* Ct = in.Ct + b * L * N;
  const T d_skip = in.D ? in.D[e] : T(0);
  const T bias = in.bias ? in.bias[e] : T(0);
  std::fill(h, h + N, T(0));
  for (int64_t t = 0; t < L; ++t) {
    T dt = delta[t] + bias;
    if (s.softplus) dt = softplus(dt);
    const T du = dt * u[t];
    const T* Bn = Bt + t * N;
    const T* Cn = Ct + t * N;
    T y = 0;
    if (decays) {
      T* dec = decays + t * N;
      for (int64_t n = 0; n < N; ++n) {
        dec[n] = std::exp(dt * A[n]);
        h[n] = dec[n] * h[n] + du * Bn[n];
        y += Cn[n] * h[n];
      }
    } else {
      for (int64_t n = 0; n < N; ++n) {
        h[n] = std::exp(dt * A[n]) * h[n] + du * Bn[n];
        y += Cn[n] * h[n];
      }
    }
    if (states) std::copy(h, h + N, states + t * N);
    y += d_skip * u[t];
    if (y_pre) y_pre[t] = y;
    if (z) y *= z[t] * sigmoid(z[t]);
    if (out) out[t] = y;
  }
}

template <typename T>
void forward_impl(const Shape& s, const Inputs<T>& in, T* out, T* last_state) {
  const int64_t channels = s.batch * s.E;
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, s.L * s.N));
  at::parallel_for(0, channels, grain, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t b = c / s.E, e = c % s.E;
      scan_channel<T>(s, in, b, e, out + c * s.L, last_state + c * s.N, nullptr, nullptr, nullptr);
    }
  });
}

// Channel groups for the B/C gradient partial sums: about 64 (batch, group) tasks in all,
// so the partial buffers stay ~64 x the size of B whatever the batch.
int64_t channel_groups(const Shape& s) { return std::clamp<int64_t>(64 / std::max<int64_t>(1, s.batch), 1, s.E); }

template <typename T>
struct Grads {
  T *u, *delta, *z;           // (batch, E, L), disjoint per channel
  T *A_part;                  // (batch, E, N), summed over batch afterwards
  T *D_part, *bias_part;      // (batch, E)
  T *Bt_part, *Ct_part;       // (groups, batch, L, N), summed over groups afterwards
};

template <typename T>
void backward_channel(const Shape& s, const Inputs<T>& in, const T* grad_out, const Grads<T>& g, int64_t group,
                      int64_t b, int64_t e, std::vector<T>& states, std::vector<T>& decays, std::vector<T>& y_pre,
                      std::vector<T>& gh) {
  const int64_t N = s.N, L = s.L;
  scan_channel<T>(s, in, b, e, nullptr, gh.data(), states.data(), decays.data(), y_pre.data());
  const int64_t row = (b * s.E + e) * L;
  const T* u = in.u + row;
  const T* delta = in.delta + row;
  const T* z = in.z ? in.z + row : nullptr;
  const T* go = grad_out + row;
  const T* A = in.A + e * N;
  const T* Bt = in.Bt + b * L * N;
  const T* Ct = in.Ct + b * L * N;
  const int64_t part = (group * s.batch + b) * L * N;
  T* gBt = g.Bt_part + part;
  T* gCt = g.Ct_part + part;
  T* gA = g.A_part + (b * s.E + e) * N;
  const T d_skip = in.D ? in.D[e] : T(0);
  const T bias = in.bias ? in.bias[e] : T(0);
  T gD = 0, gbias = 0;
  // gh[n] carries dLoss/dh_t[n]; on entry to step t it holds the part flowing back from t+1.
  std::fill(gh.begin(), gh.end(), T(0));
  for (int64_t t = L - 1; t >= 0; --t) {
    const T pre = delta[t] + bias;
    const T dt = s.softplus ? softplus(pre) : pre;
    T gy = go[t];
    if (z) {
      const T sg = sigmoid(z[t]);
      g.z[row + t] = gy * y_pre[t] * sg * (T(1) + z[t] * (T(1) - sg));
      gy *= z[t] * sg;
    }
    gD += gy * u[t];
    T gu = gy * d_skip;
    T gdt = 0;
    const T* h_t = states.data() + t * N;
    const T* h_prev = t > 0 ? states.data() + (t - 1) * N : nullptr;
    const T* Bn = Bt + t * N;
    const T* Cn = Ct + t * N;
    T* gBn = gBt + t * N;
    T* gCn = gCt + t * N;
    for (int64_t n = 0; n < N; ++n) {
      gh[n] += gy * Cn[n];
      gCn[n] += gy * h_t[n];
      const T decay = decays[t * N + n];
      // d(loss)/d(dt * A[n]) through the decay factor.
      const T g_exponent = h_prev ? gh[n] * h_prev[n] * decay : T(0);
      gA[n] += g_exponent * dt;
      gdt += g_exponent * A[n] + gh[n] * Bn[n] * u[t];
      gBn[n] += gh[n] * dt * u[t];
      gu += gh[n] * dt * Bn[n];
      gh[n] *= decay;
    }
    const T gpre = s.softplus ? gdt * softplus_grad(pre) : gdt;
    g.delta[row + t] = gpre;
    gbias += gpre;
    g.u[row + t] = gu;
  }
  g.D_part[b * s.E + e] = gD;
  g.bias_part[b * s.E + e] = gbias;
}

template <typename T>
void backward_impl(const Shape& s, const Inputs<T>& in, const T* grad_out, const Grads<T>& g, int64_t groups) {
  const int64_t per_group = (s.E + groups - 1) / groups;
  at::parallel_for(0, s.batch * groups, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> states(s.L * s.N), decays(s.L * s.N), y_pre(s.L), gh(s.N);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / groups, group = task % groups;
      const int64_t e_end = std::min(s.E, (group + 1) * per_group);
      for (int64_t e = group * per_group; e < e_end; ++e) backward_channel(s, in, grad_out, g, group, b, e, states, decays, y_pre, gh);
    }
  });
}

torch::ScalarType compute_dtype(const torch::Tensor& u) {
  return u.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

using torch::autograd::AutogradContext;

using torch::autograd::variable_list;

class SelectiveScanFunction : public torch::autograd::Function<SelectiveScanFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& u, const torch::Tensor& delta,
                               const torch::Tensor& A, const torch::Tensor& B, const torch::Tensor& C,
                               const OptTensor& D_opt, const OptTensor& z_opt, const OptTensor& bias_opt,
                               bool delta_softplus) {
    const torch::Tensor D = unwrap_optional(D_opt), z = unwrap_optional(z_opt), delta_bias = unwrap_optional(bias_opt);
    const auto ct = compute_dtype(u);
    const Shape s{u.size(0), u.size(1), A.size(1), u.size(2), delta_softplus};
    Prepared p = prepare(u, delta, A, B, C, D, z, delta_bias, ct);
    auto out = new_output({s.batch, s.E, s.L}, u.options().dtype(ct));
    auto last = new_output({s.batch, s.E, s.N}, u.options().dtype(ct));
    if (ct == torch::kFloat64)
      forward_impl<double>(s, pointers<double>(p), out.data_ptr<double>(), last.data_ptr<double>());
    else
      forward_impl<float>(s, pointers<float>(p), out.data_ptr<float>(), last.data_ptr<float>());
    // The originals, not the compute-dtype copies: bf16 inputs stay half the size.
    ctx->save_for_backward({u, delta, A, B, C, D, z, delta_bias});
    ctx->saved_data["softplus"] = delta_softplus;
    ctx->mark_non_differentiable({last});
    return {out.to(u.scalar_type()), last};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    const auto &u = saved[0], &delta = saved[1], &A = saved[2], &B = saved[3], &C = saved[4], &D = saved[5],
               &z = saved[6], &bias = saved[7];
    const auto ct = compute_dtype(u);
    const Shape s{u.size(0), u.size(1), A.size(1), u.size(2), ctx->saved_data["softplus"].toBool()};
    Prepared p = prepare(u, delta, A, B, C, D, z, bias, ct);
    auto grad_out = grad_outputs[0].to(ct).contiguous();
    const int64_t groups = channel_groups(s);
    auto opts = u.options().dtype(ct);
    auto gu = new_output({s.batch, s.E, s.L}, opts);
    auto gdelta = new_output({s.batch, s.E, s.L}, opts);
    auto gz = z.defined() ? new_output({s.batch, s.E, s.L}, opts) : torch::Tensor();
    auto gA_part = torch::zeros({s.batch, s.E, s.N}, opts);
    auto gD_part = new_output({s.batch, s.E}, opts);
    auto gbias_part = new_output({s.batch, s.E}, opts);
    auto gBt_part = torch::zeros({groups, s.batch, s.L, s.N}, opts);
    auto gCt_part = torch::zeros({groups, s.batch, s.L, s.N}, opts);
    auto run = [&](auto zero) {
      using T = decltype(zero);
      Grads<T> g{gu.data_ptr<T>(),        gdelta.data_ptr<T>(),   gz.defined() ? gz.data_ptr<T>() : nullptr,
                 gA_part.data_ptr<T>(),   gD_part.data_ptr<T>(),  gbias_part.data_ptr<T>(),
                 gBt_part.data_ptr<T>(),  gCt_part.data_ptr<T>()};
      backward_impl<T>(s, pointers<T>(p), grad_out.data_ptr<T>(), g, groups);
    };
    if (ct == torch::kFloat64)
      run(double{});
    else
      run(float{});
    auto as = [](const torch::Tensor& grad, const torch::Tensor& like) {
      return like.defined() ? grad.to(like.scalar_type()) : torch::Tensor();
    };
    return {as(gu, u),
            as(gdelta, delta),
            as(gA_part.sum(0), A),
            as(gBt_part.sum(0).transpose(1, 2), B),
            as(gCt_part.sum(0).transpose(1, 2), C),
            D.defined() ? as(gD_part.sum(0), D) : torch::Tensor(),
            z.defined() ? as(gz, z) : torch::Tensor(),
            bias.defined() ? as(gbias_part.sum(0), bias) : torch::Tensor(),
            torch::Tensor()};
  }
};

}  // namespace

std::tuple<torch::Tensor, torch::Tensor> selective_scan_cpu(
    const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A, const torch::Tensor& B,
    const torch::Tensor& C, const torch::Tensor& D, const torch::Tensor& z, const torch::Tensor& delta_bias,
    bool delta_softplus) {
  check_selective_scan_args(u, delta, A, B, C, D, z, delta_bias);
  check(u.device().is_cpu(), "selective_scan_cpu: tensors must be on the CPU, got ", u.device());
  auto outs = SelectiveScanFunction::apply(u, delta, A, B, C, wrap_optional(D), wrap_optional(z), wrap_optional(delta_bias), delta_softplus);
  return {outs[0], outs[1]};
}

}  // namespace samba::kernels
