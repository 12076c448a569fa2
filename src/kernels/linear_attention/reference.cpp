// Plain-libtorch GLA / retention: the CPU path and the oracle for future CUDA kernels.
//
// Chunked algorithm. Split T into chunks of C steps; inside chunk n let b_i be the cumulative
// log gate from the chunk start through step i (b_i <= 0 and non-increasing, per key dim).
// With S_n the state entering chunk n:
//   o_i      = scale * [ (q_i * exp(b_i)) S_n  +  sum_{j<=i} (sum_d q_id k_jd exp(b_id - b_jd)) v_j ]
//   S_{n+1}  = exp(b_last) * S_n  +  sum_j (k_j * exp(b_last - b_j))^T v_j
// The inter-chunk terms only use exponents b_i <= 0 and b_last - b_j <= 0.
//
// Stability of the intra-chunk term. The usual factorisation (q exp(b)) (k exp(-b))^T needs
// exp(-b_j), which overflows once the gates are strong (b reaches -700 in fp64, -88 in fp32,
// after a few steps of very negative gates). We never form exp(-b) alone: the chunk is split
// into sub-chunks of c <= 16 steps (fla's secondary chunking). For a query sub-chunk s and
// all earlier key positions j we factor around e = b at the last step before s:
//   exp(b_i - b_j) = exp(b_i - e) * exp(e - b_j),  both exponents <= 0 since j < start(s) <= i,
// so the off-diagonal blocks are a matmul of two bounded factors. The diagonal c x c blocks
// take exp(b_i - b_j) elementwise per key dim (a (c, c, Dk) tensor), masking j > i to -inf
// before exponentiating, so no positive exponent is ever evaluated.
// Retention's decay is a scalar per head, so its (C, C) decay matrix exp(b_i - b_j) is formed
// directly (exponents <= 0 by the mask) and no sub-chunking is needed.
#include "samba/kernels/linear_attention.h"

#include <algorithm>
#include <limits>
#include <utility>
#include <vector>

#include "samba/core/error.h"

namespace samba::kernels {
namespace {

using torch::indexing::Slice;

torch::ScalarType compute_type(const torch::Tensor& q) {
  return q.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

void check_qkv(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const char* op) {
  check(q.dim() == 4, op, ": q must be (B, H, T, Dk), got ", q.sizes());
  check(k.sizes() == q.sizes(), op, ": k must have q's shape ", q.sizes(), ", got ", k.sizes());
  check(v.dim() == 4 && v.size(0) == q.size(0) && v.size(1) == q.size(1) && v.size(2) == q.size(2), op,
        ": v must be (B, H, T, Dv) matching q ", q.sizes(), ", got ", v.sizes());
}

void check_state(const torch::Tensor& s, const torch::Tensor& q, const torch::Tensor& v, const char* op) {
  if (!s.defined()) return;
  check(s.dim() == 4 && s.size(0) == q.size(0) && s.size(1) == q.size(1) && s.size(2) == q.size(-1) &&
            s.size(3) == v.size(-1),
        op, ": state must be (B, H, Dk, Dv) = (", q.size(0), ", ", q.size(1), ", ", q.size(-1), ", ", v.size(-1),
        "), got ", s.sizes());
}

void check_log_gamma(const torch::Tensor& log_gamma, const torch::Tensor& q, const char* op) {
  check(log_gamma.dim() == 1 && log_gamma.size(0) == q.size(1), op, ": log_gamma must be (H) with H = ", q.size(1),
        ", got ", log_gamma.sizes());
}

torch::Tensor initial_or_zeros(const torch::Tensor& s, const torch::Tensor& q, const torch::Tensor& v,
                               torch::ScalarType ct) {
  if (s.defined()) return s.to(ct);
  return torch::zeros({q.size(0), q.size(1), q.size(-1), v.size(-1)}, q.options().dtype(ct));
}

// (B, H, T, D) -> (B, H, N, C, D), zero-padded at the end. Zero keys and values add nothing to
// the state and zero log gates leave it undecayed, so padding changes neither the outputs of
// real steps nor the final state.
torch::Tensor to_chunks(const torch::Tensor& x, int64_t chunk) {
  const int64_t T = x.size(2);
  const int64_t n = (T + chunk - 1) / chunk;
  auto padded = n * chunk == T ? x : torch::constant_pad_nd(x, {0, 0, 0, n * chunk - T});
  return padded.reshape({x.size(0), x.size(1), n, chunk, x.size(3)});
}

torch::Tensor from_chunks(const torch::Tensor& x, int64_t T) {
  auto flat = x.reshape({x.size(0), x.size(1), x.size(2) * x.size(3), x.size(4)});
  return flat.index({Slice(), Slice(), Slice(0, T)});
}

// Walks the chunks: returns the state entering every chunk (B, H, N, Dk, Dv) and the final
// state. `increment` (B, H, N, Dk, Dv) is each chunk's own contribution; `decay` broadcasts
// to it and holds exp(b_last), the decay a state suffers across a whole chunk.
std::pair<torch::Tensor, torch::Tensor> carry_states(const torch::Tensor& increment, const torch::Tensor& decay,
                                                     torch::Tensor state) {
  const int64_t n = increment.size(2);
  std::vector<torch::Tensor> entering;
  entering.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    entering.push_back(state);
    state = decay.select(2, i) * state + increment.select(2, i);
  }
  return {torch::stack(entering, 2), state};
}

// Largest divisor of the chunk that is at most 16: the diagonal blocks cost O(c * Dk) per
// token in memory, so c stays small, and it must tile the chunk exactly.
int64_t sub_chunk_size(int64_t chunk) {
  for (int64_t c = std::min<int64_t>(16, chunk); c > 1; --c)
    if (chunk % c == 0) return c;
  return 1;
}

// Causal mask of a (c, c) block: true where the key comes after the query.
torch::Tensor future_mask(int64_t c, const torch::Device& device) {
  return torch::ones({c, c}, torch::TensorOptions().dtype(torch::kBool).device(device)).triu(1);
}

// GLA intra-chunk scores A[i, j] = sum_d q_id k_jd exp(b_id - b_jd) for j <= i, else 0.
// q, k, b: (B, H, N, C, Dk) -> (B, H, N, C, C). See the header comment for the factorisation.
torch::Tensor gla_intra_scores(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& b) {
  const int64_t C = q.size(3), Dk = q.size(4);
  const int64_t c = sub_chunk_size(C), m = C / c;
  auto lead = q.sizes().slice(0, 3).vec();
  auto blocked = [&](const torch::Tensor& x) {
    auto shape = lead;
    shape.insert(shape.end(), {m, c, Dk});
    return x.reshape(shape);
  };
  auto qb = blocked(q), kb = blocked(k), bb = blocked(b);  // (B, H, N, m, c, Dk)

  // Diagonal blocks for every sub-chunk at once: exponent[i, j, d] = b_id - b_jd.
  auto exponent = bb.unsqueeze(-2) - bb.unsqueeze(-3);  // (B, H, N, m, c, c, Dk)
  exponent = exponent.masked_fill(future_mask(c, q.device()).unsqueeze(-1), -std::numeric_limits<double>::infinity());
  auto diag = (qb.unsqueeze(-2) * kb.unsqueeze(-3) * exponent.exp()).sum(-1);  // (B, H, N, m, c, c)

  std::vector<torch::Tensor> rows;
  rows.reserve(static_cast<size_t>(m));
  for (int64_t s = 0; s < m; ++s) {
    std::vector<torch::Tensor> parts;
    if (s > 0) {
      auto e = b.select(3, s * c - 1).unsqueeze(3);  // log gate just before the sub-chunk
      auto q_rel = qb.select(3, s) * (bb.select(3, s) - e).exp();
      auto k_prev = k.index({Slice(), Slice(), Slice(), Slice(0, s * c)});
      auto b_prev = b.index({Slice(), Slice(), Slice(), Slice(0, s * c)});
      parts.push_back(q_rel.matmul((k_prev * (e - b_prev).exp()).transpose(-1, -2)));
    }
    parts.push_back(diag.select(3, s));
    if (s + 1 < m) {
      auto shape = lead;
      shape.insert(shape.end(), {c, C - (s + 1) * c});
      parts.push_back(torch::zeros(shape, q.options()));
    }
    rows.push_back(torch::cat(parts, -1));
  }
  return torch::cat(rows, -2);
}

LinearAttentionResult empty_result(const torch::Tensor& q, const torch::Tensor& v, const torch::Tensor& s0,
                                   bool output_final_state) {
  LinearAttentionResult r;
  r.output = torch::zeros({q.size(0), q.size(1), 0, v.size(-1)}, q.options());
  if (output_final_state) r.final_state = initial_or_zeros(s0, q, v, compute_type(q));
  return r;
}

// o_t = scale * q_t S_t after S_t = decay * S_{t-1} + k_t^T v_t; `decay` broadcasts to S.
torch::Tensor recurrent_update(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               const torch::Tensor& decay, torch::Tensor& state, double scale) {
  state = decay * state + k.unsqueeze(-1) * v.unsqueeze(-2);
  return q.unsqueeze(-2).matmul(state).squeeze(-2) * scale;
}

}  // namespace

LinearAttentionResult gla_chunked(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                  const torch::Tensor& log_g, int64_t chunk_size, double scale,
                                  const torch::Tensor& initial_state, bool output_final_state) {
  check_qkv(q, k, v, "gla_chunked");
  check(log_g.sizes() == q.sizes(), "gla_chunked: log_g must have q's shape ", q.sizes(), ", got ", log_g.sizes());
  check(chunk_size > 0, "gla_chunked: chunk_size must be positive, got ", chunk_size);
  check_state(initial_state, q, v, "gla_chunked");
  const int64_t T = q.size(2);
  if (T == 0) return empty_result(q, v, initial_state, output_final_state);
  const auto ct = compute_type(q);
  const int64_t C = std::min(chunk_size, T);

  auto qc = to_chunks(q.to(ct), C), kc = to_chunks(k.to(ct), C), vc = to_chunks(v.to(ct), C);
  auto b = to_chunks(log_g.to(ct), C).cumsum(3);  // (B, H, N, C, Dk)
  auto b_last = b.select(3, C - 1);               // (B, H, N, Dk)

  auto k_to_end = kc * (b_last.unsqueeze(3) - b).exp();
  auto increment = k_to_end.transpose(-1, -2).matmul(vc);  // (B, H, N, Dk, Dv)
  auto [entering, final_state] =
      carry_states(increment, b_last.exp().unsqueeze(-1), initial_or_zeros(initial_state, q, v, ct));

  auto o = (qc * b.exp()).matmul(entering) + gla_intra_scores(qc, kc, b).matmul(vc);
  LinearAttentionResult r;
  r.output = (from_chunks(o, T) * scale).to(q.scalar_type());
  if (output_final_state) r.final_state = final_state;
  return r;
}

LinearAttentionResult gla_recurrent(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                    const torch::Tensor& log_g, double scale, const torch::Tensor& initial_state,
                                    bool output_final_state) {
  check_qkv(q, k, v, "gla_recurrent");
  check(log_g.sizes() == q.sizes(), "gla_recurrent: log_g must have q's shape ", q.sizes(), ", got ", log_g.sizes());
  check_state(initial_state, q, v, "gla_recurrent");
  const int64_t T = q.size(2);
  if (T == 0) return empty_result(q, v, initial_state, output_final_state);
  const auto ct = compute_type(q);
  auto qf = q.to(ct), kf = k.to(ct), vf = v.to(ct), decay = log_g.to(ct).exp();
  auto state = initial_or_zeros(initial_state, q, v, ct);
  std::vector<torch::Tensor> outs;
  outs.reserve(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t)
    outs.push_back(
        recurrent_update(qf.select(2, t), kf.select(2, t), vf.select(2, t), decay.select(2, t).unsqueeze(-1), state, scale));
  LinearAttentionResult r;
  r.output = torch::stack(outs, 2).to(q.scalar_type());
  if (output_final_state) r.final_state = state;
  return r;
}

torch::Tensor gla_step(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                       const torch::Tensor& log_g, torch::Tensor& state, double scale) {
  check(q.dim() == 3 && k.sizes() == q.sizes() && log_g.sizes() == q.sizes(),
        "gla_step: q, k, log_g must be (B, H, Dk) of one shape, got ", q.sizes(), ", ", k.sizes(), ", ", log_g.sizes());
  check(v.dim() == 3 && v.size(0) == q.size(0) && v.size(1) == q.size(1), "gla_step: v must be (B, H, Dv), got ",
        v.sizes());
  check(state.defined() && state.dim() == 4 && state.size(2) == q.size(2) && state.size(3) == v.size(2),
        "gla_step: state must be (B, H, Dk, Dv), got ", state.defined() ? state.sizes() : torch::IntArrayRef{});
  const auto ct = state.scalar_type();
  auto o = recurrent_update(q.to(ct), k.to(ct), v.to(ct), log_g.to(ct).exp().unsqueeze(-1), state, scale);
  return o.to(q.scalar_type());
}

LinearAttentionResult retention_chunked(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                        const torch::Tensor& log_gamma, int64_t chunk_size, double scale,
                                        const torch::Tensor& initial_state, bool output_final_state) {
  check_qkv(q, k, v, "retention_chunked");
  check_log_gamma(log_gamma, q, "retention_chunked");
  check(chunk_size > 0, "retention_chunked: chunk_size must be positive, got ", chunk_size);
  check_state(initial_state, q, v, "retention_chunked");
  const int64_t H = q.size(1), T = q.size(2);
  if (T == 0) return empty_result(q, v, initial_state, output_final_state);
  const auto ct = compute_type(q);
  const int64_t C = std::min(chunk_size, T);
  const int64_t N = (T + C - 1) / C;

  // Per-step log decay (H, N, C), zero on padded steps so the final state is not decayed.
  auto steps = torch::arange(N * C, q.options().dtype(torch::kLong)) < T;
  auto log_decay = log_gamma.to(q.device(), ct).view({H, 1}) * steps.to(ct).view({1, N * C});
  auto b = log_decay.view({H, N, C}).cumsum(-1);
  auto b_last = b.select(2, C - 1);  // (H, N)

  auto exponent = b.unsqueeze(-1) - b.unsqueeze(-2);  // (H, N, C, C): b_i - b_j
  exponent = exponent.masked_fill(future_mask(C, q.device()), -std::numeric_limits<double>::infinity());
  auto decay_matrix = exponent.exp();

  auto qc = to_chunks(q.to(ct), C), kc = to_chunks(k.to(ct), C), vc = to_chunks(v.to(ct), C);
  auto k_to_end = kc * (b_last.unsqueeze(-1) - b).exp().unsqueeze(-1);
  auto increment = k_to_end.transpose(-1, -2).matmul(vc);
  auto chunk_decay = b_last.exp().view({1, H, N, 1, 1});
  auto [entering, final_state] = carry_states(increment, chunk_decay, initial_or_zeros(initial_state, q, v, ct));

  auto intra = (qc.matmul(kc.transpose(-1, -2)) * decay_matrix).matmul(vc);
  auto o = (qc * b.exp().unsqueeze(-1)).matmul(entering) + intra;
  LinearAttentionResult r;
  r.output = (from_chunks(o, T) * scale).to(q.scalar_type());
  if (output_final_state) r.final_state = final_state;
  return r;
}

LinearAttentionResult retention_recurrent(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                          const torch::Tensor& log_gamma, double scale,
                                          const torch::Tensor& initial_state, bool output_final_state) {
  check_qkv(q, k, v, "retention_recurrent");
  check_log_gamma(log_gamma, q, "retention_recurrent");
  auto log_g = log_gamma.to(q.device(), compute_type(q)).view({1, -1, 1, 1}).expand(q.sizes());
  return gla_recurrent(q, k, v, log_g, scale, initial_state, output_final_state);
}

torch::Tensor retention_step(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const torch::Tensor& log_gamma, torch::Tensor& state, double scale) {
  check(q.dim() == 3, "retention_step: q must be (B, H, Dk), got ", q.sizes());
  check(log_gamma.dim() == 1 && log_gamma.size(0) == q.size(1), "retention_step: log_gamma must be (H) with H = ",
        q.size(1), ", got ", log_gamma.sizes());
  auto log_g = log_gamma.to(q.device(), state.scalar_type()).view({1, -1, 1}).expand(q.sizes());
  return gla_step(q, k, v, log_g, state, scale);
}

}  // namespace samba::kernels
