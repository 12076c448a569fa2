// The libtorch reference of the selective scan (the oracle in tests, the fallback on devices
// without a kernel), the argument checks and the one-step decoding update.
#include "samba/core/error.h"
#include "samba/kernels/selective_scan.h"

namespace samba::kernels {
namespace {

torch::ScalarType compute_dtype(const torch::Tensor& t) {
  return t.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

// dt with its bias and optional softplus, in the compute dtype; `delta` is (..., E, L) or
// (..., E), `bias` (E).
torch::Tensor make_dt(const torch::Tensor& delta, const torch::Tensor& bias, bool softplus, bool has_time_axis,
                      torch::ScalarType ct) {
  auto dt = delta.to(ct);
  if (bias.defined()) dt = dt + (has_time_axis ? bias.to(ct).unsqueeze(-1) : bias.to(ct));
  return softplus ? torch::softplus(dt) : dt;
}

}  // namespace

void check_selective_scan_args(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A,
                               const torch::Tensor& B, const torch::Tensor& C, const torch::Tensor& D,
                               const torch::Tensor& z, const torch::Tensor& delta_bias) {
  check(u.defined() && delta.defined() && A.defined() && B.defined() && C.defined(),
        "selective_scan: u, delta, A, B and C are required");
  check(u.dim() == 3, "selective_scan: u must be (batch, E, L), got ", u.sizes());
  const int64_t batch = u.size(0), E = u.size(1), L = u.size(2);
  check(L >= 1, "selective_scan: the sequence is empty (L = 0)");
  check(delta.sizes() == u.sizes(), "selective_scan: delta ", delta.sizes(), " must match u ", u.sizes());
  check(A.dim() == 2 && A.size(0) == E, "selective_scan: A must be (E=", E, ", N), got ", A.sizes());
  const int64_t N = A.size(1);
  for (const auto* t : {&B, &C})
    check(t->dim() == 3 && t->size(0) == batch && t->size(1) == N && t->size(2) == L,
          "selective_scan: B and C must be (batch=", batch, ", N=", N, ", L=", L, "), got ", t->sizes());
  if (z.defined()) check(z.sizes() == u.sizes(), "selective_scan: z ", z.sizes(), " must match u ", u.sizes());
  for (const auto* t : {&D, &delta_bias})
    if (t->defined()) check(t->dim() == 1 && t->size(0) == E, "selective_scan: D and delta_bias must be (E=", E, "), got ", t->sizes());
  for (const auto* t : {&delta, &A, &B, &C, &D, &z, &delta_bias})
    if (t->defined())
      check(t->device() == u.device(), "selective_scan: all tensors must be on ", u.device(), ", one is on ", t->device());
  check(c10::isFloatingType(u.scalar_type()), "selective_scan: u must be floating point, got ", u.scalar_type());
}

std::tuple<torch::Tensor, torch::Tensor> selective_scan_reference(
    const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A, const torch::Tensor& B,
    const torch::Tensor& C, const torch::Tensor& D, const torch::Tensor& z, const torch::Tensor& delta_bias,
    bool delta_softplus) {
  check_selective_scan_args(u, delta, A, B, C, D, z, delta_bias);
  const auto ct = compute_dtype(u);
  const auto uc = u.to(ct);
  const auto dt = make_dt(delta, delta_bias, delta_softplus, /*has_time_axis=*/true, ct);  // (b, E, L)
  const auto Bc = B.to(ct), Cc = C.to(ct);
  // Discretised per-step factors, (b, E, N, L): decay exp(dt A) and input dt B u.
  const auto decay = torch::exp(dt.unsqueeze(2) * A.to(ct).unsqueeze(0).unsqueeze(-1));
  const auto drive = (dt * uc).unsqueeze(2) * Bc.unsqueeze(1);
  auto h = torch::zeros({u.size(0), u.size(1), A.size(1)}, uc.options());
  // unbind, not select per step: select's backward writes a full-size zero tensor per step
  // (quadratic in L), unbind's backward is one stack.
  const auto decay_t = decay.unbind(3), drive_t = drive.unbind(3), C_t = Cc.unbind(2);
  std::vector<torch::Tensor> ys;
  ys.reserve(u.size(2));
  for (int64_t t = 0; t < u.size(2); ++t) {
    h = decay_t[t] * h + drive_t[t];
    ys.push_back((h * C_t[t].unsqueeze(1)).sum(-1));
  }
  auto y = torch::stack(ys, -1);
  if (D.defined()) y = y + uc * D.to(ct).unsqueeze(-1);
  if (z.defined()) y = y * torch::silu(z.to(ct));
  return {y.to(u.scalar_type()), h};
}

torch::Tensor selective_state_update(torch::Tensor& state, const torch::Tensor& x, const torch::Tensor& dt,
                                     const torch::Tensor& A, const torch::Tensor& B, const torch::Tensor& C,
                                     const torch::Tensor& D, const torch::Tensor& z, const torch::Tensor& dt_bias,
                                     bool dt_softplus) {
  check(state.dim() == 3, "selective_state_update: state must be (batch, E, N), got ", state.sizes());
  check(state.scalar_type() == torch::kFloat32 || state.scalar_type() == torch::kFloat64,
        "selective_state_update: keep the state in fp32 or fp64, got ", state.scalar_type());
  const int64_t batch = state.size(0), E = state.size(1), N = state.size(2);
  check(x.dim() == 2 && x.size(0) == batch && x.size(1) == E && dt.sizes() == x.sizes(),
        "selective_state_update: x and dt must be (batch=", batch, ", E=", E, "), got ", x.sizes(), " and ", dt.sizes());
  check(A.dim() == 2 && A.size(0) == E && A.size(1) == N, "selective_state_update: A must be (", E, ", ", N, "), got ",
        A.sizes());
  check(B.dim() == 2 && B.size(0) == batch && B.size(1) == N && C.sizes() == B.sizes(),
        "selective_state_update: B and C must be (batch=", batch, ", N=", N, "), got ", B.sizes(), " and ", C.sizes());
  if (z.defined()) check(z.sizes() == x.sizes(), "selective_state_update: z must match x");
  const auto ct = state.scalar_type();
  const auto xc = x.to(ct);
  const auto dtc = make_dt(dt, dt_bias, dt_softplus, /*has_time_axis=*/false, ct);  // (b, E)
  const auto decay = torch::exp(dtc.unsqueeze(-1) * A.to(ct));
  const auto next = decay * state + (dtc * xc).unsqueeze(-1) * B.to(ct).unsqueeze(1);
  auto y = (next * C.to(ct).unsqueeze(1)).sum(-1);
  if (D.defined()) y = y + xc * D.to(ct);
  if (z.defined()) y = y * torch::silu(z.to(ct));
  {
    // The state is a decoding buffer: no autograd history is kept across steps.
    torch::NoGradGuard no_grad;
    state.copy_(next.detach());
  }
  return y.to(x.scalar_type());
}

}  // namespace samba::kernels
