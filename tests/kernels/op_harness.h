#pragma once
// The table-driven op-test harness (after ggml's test-backend-ops): every kernel op x backend
// x dtype x shape, forward and gradients, against an fp64 oracle on the CPU.
//
// Adding an op = one OpCase in op_table(): how to draw its inputs for a shape, the oracle,
// and its implementations (backends) with the devices and dtypes each handles. Each run
//   1. draws fp64 inputs, rounds the activation inputs to the dtype under test (parameters
//      stay fp32) and moves them to the backend's device;
//   2. runs the backend with poison_outputs() on (every buffer it allocates starts as NaN);
//   3. runs the oracle in fp64 on the same (rounded) values, so only the backend's own
//      arithmetic is measured;
//   4. compares outputs and the gradients of loss = sum_k <out_k, w_k> (random w) by
//      max|a - b| / max|b| against per-dtype tolerances; NaN never passes.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "samba/kernels/causal_conv1d.h"
#include "samba/kernels/common.h"
#include "samba/kernels/linear_cross_entropy.h"
#include "samba/kernels/rms_norm.h"
#include "samba/kernels/rope.h"
#include "samba/kernels/selective_scan.h"
#include "samba/kernels/swiglu.h"

namespace samba::testing::ops {

using Tensors = std::vector<torch::Tensor>;
using Shape = std::vector<int64_t>;

struct Tolerance {
  double forward, grad;
};

struct Backend {
  std::string name;
  torch::DeviceType device;
  std::vector<torch::ScalarType> dtypes;
  std::function<Tensors(const Tensors&, const Shape&)> run;
};

struct OpCase {
  std::string op;
  std::vector<Shape> shapes;  // the op's own meaning, documented at its entry
  // fp64 CPU inputs for a shape (undefined = absent optional input).
  std::function<Tensors(const Shape&)> make_inputs;
  std::vector<bool> is_activation;  // rounded to the dtype under test; others stay fp32
  std::vector<bool> needs_grad;
  int differentiable_outputs = 1;   // the first k outputs enter the loss
  bool first_output_in_dtype = true;  // else it is fp32 whatever the inputs (a loss)
  std::function<Tensors(const Tensors&, const Shape&)> oracle;
  std::vector<Backend> backends;
  std::map<torch::ScalarType, Tolerance> tolerance;
};

inline double rel_err(const torch::Tensor& a, const torch::Tensor& b) {
  auto a64 = a.detach().to(torch::kCPU, torch::kFloat64), b64 = b.detach().to(torch::kCPU, torch::kFloat64);
  const double num = (a64 - b64).abs().max().item<double>();
  const double den = std::max(b64.abs().max().item<double>(), 1e-30);
  return num / den;  // NaN if a has a NaN: fails every comparison below
}

// --- the table -------------------------------------------------------------------------

inline Tensors scan_inputs(const Shape& s) {
  // {batch, E, N, L, with z/D/bias, softplus}
  const int64_t batch = s[0], E = s[1], N = s[2], L = s[3];
  auto o = torch::TensorOptions().dtype(torch::kFloat64);
  Tensors t(8);
  t[0] = torch::randn({batch, E, L}, o);                // u
  // delta: around -1 before a softplus; without one it is dt itself, so keep it positive
  // (a negative dt makes exp(dt A) > 1 and the state overflow fp32 within a few dozen steps).
  t[1] = s[5] ? torch::randn({batch, E, L}, o) * 0.5 - 1.0 : torch::rand({batch, E, L}, o) * 0.3 + 0.01;
  t[2] = -torch::rand({E, N}, o) * 2.0 - 0.1;           // A
  t[3] = torch::randn({batch, N, L}, o);                // B
  t[4] = torch::randn({batch, N, L}, o);                // C
  if (s[4]) {
    t[5] = torch::randn({E}, o);                        // D
    t[6] = torch::randn({batch, E, L}, o);              // z
    t[7] = s[5] ? torch::randn({E}, o) * 0.3 : torch::rand({E}, o) * 0.1;  // delta_bias (dt stays > 0)
  }
  return t;
}

inline Tensors conv_inputs(const Shape& s) {
  // {batch, C, L, K, with bias, silu, with initial state}
  auto o = torch::TensorOptions().dtype(torch::kFloat64);
  Tensors t(4);
  t[0] = torch::randn({s[0], s[1], s[2]}, o);
  t[1] = torch::randn({s[1], s[3]}, o) * 0.5;
  if (s[4]) t[2] = torch::randn({s[1]}, o);
  if (s[6]) t[3] = torch::randn({s[0], s[1], s[3] - 1}, o);
  return t;
}

inline Tensors norm_inputs(const Shape& s) {
  // {batch, T, d, with residual}
  auto o = torch::TensorOptions().dtype(torch::kFloat64);
  Tensors t(3);
  t[0] = torch::randn({s[0], s[1], s[2]}, o);
  if (s[3]) t[1] = torch::randn({s[0], s[1], s[2]}, o) * 3.0;
  t[2] = torch::rand({s[2]}, o) + 0.5;
  return t;
}

inline Tensors lce_inputs(const Shape& s) {
  // {batch, T, d, vocab, chunk}; about a fifth of the targets ignored (-1)
  auto o = torch::TensorOptions().dtype(torch::kFloat64);
  Tensors t(3);
  t[0] = torch::randn({s[0], s[1], s[2]}, o);
  t[1] = torch::randn({s[3], s[2]}, o) * 0.3;
  t[2] = torch::randint(s[3], {s[0], s[1]}, torch::kLong);
  t[2].masked_fill_(torch::rand({s[0], s[1]}) < 0.2, -1);
  return t;
}

// cos, sin (rows, D) of the rotate-half convention (base 10000), fp64.
inline Tensors rope_tables(int64_t rows, int64_t D) {
  auto o = torch::TensorOptions().dtype(torch::kFloat64);
  auto inv_freq = torch::pow(10000.0, -torch::arange(0, D, 2, o) / static_cast<double>(D));
  auto angles = torch::outer(torch::arange(rows, o), inv_freq);
  angles = torch::cat({angles, angles}, -1);
  return {angles.cos(), angles.sin()};
}

inline Tensors rope_inputs(const Shape& s) {
  // {batch, T, H, D, offset}; the tables cover a few positions more than needed
  auto t = rope_tables(s[4] + s[1] + 3, s[3]);
  return {torch::randn({s[0], s[1], s[2], s[3]}, torch::kFloat64), t[0], t[1]};
}

inline Tensors rope_qk_inputs(const Shape& s) {
  // {batch, T, Hq, Hk, D, offset}
  auto t = rope_tables(s[5] + s[1], s[4]);
  auto o = torch::TensorOptions().dtype(torch::kFloat64);
  return {torch::randn({s[0], s[1], s[2], s[4]}, o), torch::randn({s[0], s[1], s[3], s[4]}, o), t[0], t[1]};
}

inline Tensors swiglu_inputs(const Shape& s) {
  // {batch, T, hidden}; gate spread over silu's curved part and both tails
  auto o = torch::TensorOptions().dtype(torch::kFloat64);
  return {torch::randn({s[0], s[1], s[2]}, o) * 3.0, torch::randn({s[0], s[1], s[2]}, o)};
}

// A view of t with a different memory layout (same values, still differentiable): heads
// interleaved with a copy (strided heads, as q in a fused qkv projection), or the data one
// element past an aligned address (the kernels' unaligned paths).
inline torch::Tensor strided_heads(const torch::Tensor& t) {
  return torch::cat({t, t}, 2).narrow(2, t.size(2), t.size(2));
}
inline torch::Tensor misaligned(const torch::Tensor& t) {
  return torch::cat({t.new_zeros({1}), t.flatten()}).narrow(0, 1, t.numel()).view(t.sizes());
}

inline std::vector<OpCase> op_table() {
  namespace K = samba::kernels;
  std::vector<OpCase> table;
  // fp64 only where it is not the oracle's own path (that comparison could not fail).
  const auto all = std::vector<torch::ScalarType>{torch::kFloat64, torch::kFloat32, torch::kBFloat16};
  const auto low = std::vector<torch::ScalarType>{torch::kFloat32, torch::kBFloat16};

  {
    OpCase c;
    c.op = "selective_scan";
    // Odd shapes: batch 1, channels not a multiple of a block (64 / 32), lengths not a
    // multiple of the chunk (64) or tile (32), state sizes that are not a power of two.
    c.shapes = {{1, 3, 2, 5, 1, 1}, {2, 70, 16, 133, 1, 1}, {3, 33, 5, 64, 0, 0}, {1, 40, 16, 257, 1, 0}};
    c.make_inputs = scan_inputs;
    c.is_activation = {true, true, false, true, true, false, true, false};
    c.needs_grad = {true, true, true, true, true, true, true, true};
    c.differentiable_outputs = 1;
    auto bind = [](auto fn) {
      return [fn](const Tensors& t, const Shape& s) {
        auto [y, h] = fn(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], /*softplus=*/s[5] != 0);
        return Tensors{y, h};
      };
    };
    c.oracle = bind(&K::selective_scan_reference);
    c.backends = {{"reference", torch::kCPU, low, bind(&K::selective_scan_reference)},
                  {"cpu", torch::kCPU, all, bind(&K::selective_scan_cpu)},
                  {"cuda", torch::kCUDA, low, bind(&K::selective_scan_cuda)}};
    c.tolerance = {{torch::kFloat64, {1e-10, 1e-9}}, {torch::kFloat32, {1e-4, 1e-3}}, {torch::kBFloat16, {1e-2, 2e-2}}};
    table.push_back(c);
  }
  {
    OpCase c;
    c.op = "causal_conv1d";
    c.shapes = {{1, 3, 5, 4, 1, 1, 0}, {2, 130, 300, 4, 1, 1, 1}, {3, 7, 2, 3, 0, 0, 1}, {2, 129, 513, 2, 1, 1, 0}};
    c.make_inputs = conv_inputs;
    c.is_activation = {true, false, false, false};
    c.needs_grad = {true, true, true, false};
    c.differentiable_outputs = 1;
    auto bind = [](auto fn) {
      return [fn](const Tensors& t, const Shape& s) { return Tensors{fn(t[0], t[1], t[2], /*silu=*/s[5] != 0, t[3])}; };
    };
    c.oracle = bind(&K::causal_conv1d_reference);
    c.backends = {{"reference", torch::kCPU, low, bind(&K::causal_conv1d_reference)},
                  {"cuda", torch::kCUDA, low, bind(&K::causal_conv1d_cuda)}};
    // bf16 gradients: torch's conv1d (the reference backend) accumulates in bf16 itself.
    c.tolerance = {{torch::kFloat64, {1e-12, 1e-12}}, {torch::kFloat32, {1e-5, 1e-5}}, {torch::kBFloat16, {1e-2, 3e-2}}};
    table.push_back(c);
  }
  {
    OpCase c;
    c.op = "rms_norm_residual";
    // 600 rows: more rows than backward blocks, so blocks (CUDA: warps) own several rows. On
    // CUDA, widths that are multiples of 4 up to 2048 take the warp-per-row backward; 7 and
    // 2500 the block-per-row one.
    c.shapes = {{1, 1, 7, 0}, {2, 33, 1536, 1}, {3, 5, 100, 1}, {1, 600, 64, 1}, {2, 9, 2500, 1}};
    c.make_inputs = norm_inputs;
    c.is_activation = {true, false, false};  // the residual stream stays fp32
    c.needs_grad = {true, true, true};
    c.differentiable_outputs = 2;  // y and the residual stream both feed the rest of the model
    auto bind = [](auto fn) {
      return [fn](const Tensors& t, const Shape&) {
        auto [y, r] = fn(t[0], t[1], t[2], 1e-5, t[0].scalar_type());
        return Tensors{y, r};
      };
    };
    c.oracle = bind(&K::rms_norm_residual_reference);
    c.backends = {{"reference", torch::kCPU, low, bind(&K::rms_norm_residual_reference)},
                  {"cuda", torch::kCUDA, low, bind(&K::rms_norm_residual_cuda)}};
    c.tolerance = {{torch::kFloat64, {1e-12, 1e-12}}, {torch::kFloat32, {1e-5, 1e-5}}, {torch::kBFloat16, {1e-2, 1e-2}}};
    table.push_back(c);
  }
  {
    OpCase c;
    c.op = "linear_cross_entropy";
    // Chunks that do not divide the tokens (14 by 5, 12 by 7) and the automatic chunk.
    c.shapes = {{2, 7, 16, 50, 5}, {1, 33, 8, 11, 0}, {3, 4, 32, 1000, 7}};
    c.make_inputs = lce_inputs;
    c.is_activation = {true, false, false};
    c.needs_grad = {true, true, false};
    c.differentiable_outputs = 1;
    c.first_output_in_dtype = false;
    c.oracle = [](const Tensors& t, const Shape&) {
      return Tensors{K::linear_cross_entropy_reference(t[0], t[1], t[2], -1)};
    };
    auto fused = [](const Tensors& t, const Shape& s) {
      return Tensors{K::linear_cross_entropy(t[0], t[1], t[2], -1, s[4])};
    };
    c.backends = {{"fused", torch::kCPU, low, fused}, {"fused", torch::kCUDA, low, fused}};
    c.tolerance = {{torch::kFloat32, {1e-5, 1e-5}}, {torch::kBFloat16, {1e-2, 2e-2}}};
    table.push_back(c);
  }
  {
    OpCase c;
    c.op = "rope";
    // Odd shapes: batch 1, T not a multiple of anything, half head dims that are not a
    // multiple of a 16-byte pack (3, 20 for bf16), the smallest head (2), offsets > 0.
    c.shapes = {{1, 1, 1, 2, 0}, {2, 37, 3, 128, 5}, {1, 13, 4, 6, 1000}, {2, 9, 5, 40, 3}, {3, 5, 2, 64, 0}};
    c.make_inputs = rope_inputs;
    c.is_activation = {true, false, false};  // the tables are fp32 (fp64 for fp64 x)
    c.needs_grad = {true, false, false};
    auto bind = [](auto fn, auto layout) {
      return [fn, layout](const Tensors& t, const Shape& s) { return Tensors{fn(layout(t[0]), t[1], t[2], s[4])}; };
    };
    auto as_is = [](const torch::Tensor& t) { return t; };
    c.oracle = bind(&K::rope_reference, as_is);
    c.backends = {{"reference", torch::kCPU, low, bind(&K::rope_reference, as_is)},
                  {"cuda", torch::kCUDA, low, bind(&K::rope_cuda, as_is)},
                  {"cuda_strided", torch::kCUDA, low, bind(&K::rope_cuda, strided_heads)}};
    c.tolerance = {{torch::kFloat64, {1e-12, 1e-12}}, {torch::kFloat32, {1e-5, 1e-5}}, {torch::kBFloat16, {1e-2, 1e-2}}};
    table.push_back(c);
  }
  {
    OpCase c;
    c.op = "rope_qk";
    c.shapes = {{1, 1, 1, 1, 2, 0}, {2, 37, 6, 2, 128, 7}, {1, 19, 3, 1, 40, 1000}, {3, 4, 2, 2, 6, 1}};
    c.make_inputs = rope_qk_inputs;
    c.is_activation = {true, true, false, false};
    c.needs_grad = {true, true, false, false};
    c.differentiable_outputs = 2;
    auto bind = [](auto fn) {
      return [fn](const Tensors& t, const Shape& s) {
        auto [q, k] = fn(t[0], t[1], t[2], t[3], s[5]);
        return Tensors{q, k};
      };
    };
    c.oracle = bind(&K::rope_qk_reference);
    c.backends = {{"reference", torch::kCPU, low, bind(&K::rope_qk_reference)},
                  {"cuda", torch::kCUDA, low, bind(&K::rope_qk_cuda)}};
    c.tolerance = {{torch::kFloat64, {1e-12, 1e-12}}, {torch::kFloat32, {1e-5, 1e-5}}, {torch::kBFloat16, {1e-2, 1e-2}}};
    table.push_back(c);
  }
  {
    OpCase c;
    c.op = "swiglu";
    // hidden 37 and 1000: rows that break the 16-byte packs (and 37 * 3 leaves a tail).
    c.shapes = {{1, 1, 37}, {2, 33, 1000}, {1, 3, 1}, {3, 37, 37}, {1, 4, 4096}};
    c.make_inputs = swiglu_inputs;
    c.is_activation = {true, true};
    c.needs_grad = {true, true};
    auto bind = [](auto fn, auto layout) {
      return [fn, layout](const Tensors& t, const Shape&) { return Tensors{fn(layout(t[0]), layout(t[1]))}; };
    };
    auto as_is = [](const torch::Tensor& t) { return t; };
    c.oracle = bind(&K::swiglu_reference, as_is);
    c.backends = {{"reference", torch::kCPU, low, bind(&K::swiglu_reference, as_is)},
                  {"cuda", torch::kCUDA, low, bind(&K::swiglu_cuda, as_is)},
                  {"cuda_misaligned", torch::kCUDA, low, bind(&K::swiglu_cuda, misaligned)}};
    // bf16 reference backend: torch rounds silu(gate) to bf16 before the product.
    c.tolerance = {{torch::kFloat64, {1e-12, 1e-12}}, {torch::kFloat32, {1e-5, 1e-5}}, {torch::kBFloat16, {1e-2, 2e-2}}};
    table.push_back(c);
  }
  return table;
}

// --- the runner ------------------------------------------------------------------------

struct Run {
  size_t op, backend, shape;
  torch::ScalarType dtype;
};

// gtest prints parameters with this (instead of the struct's raw bytes).
inline void PrintTo(const Run& r, std::ostream* os) {
  *os << "op " << r.op << " backend " << r.backend << " shape " << r.shape << " " << c10::toString(r.dtype);
}

inline std::string run_name(const std::vector<OpCase>& table, const Run& r) {
  std::string s = table[r.op].op + "_" + table[r.op].backends[r.backend].name + "_" + c10::toString(r.dtype) + "_s" +
                  std::to_string(r.shape);
  return s;
}

// Every (op, backend, dtype, shape) whose backend runs on `device`.
inline std::vector<Run> runs_on(torch::DeviceType device) {
  std::vector<Run> out;
  const auto table = op_table();
  for (size_t o = 0; o < table.size(); ++o)
    for (size_t b = 0; b < table[o].backends.size(); ++b) {
      const auto& be = table[o].backends[b];
      if (be.device != device) continue;
      for (auto dt : be.dtypes)
        for (size_t s = 0; s < table[o].shapes.size(); ++s) out.push_back({o, b, s, dt});
    }
  return out;
}

inline void check_run(const Run& r, uint64_t seed = 1234) {
  const auto table = op_table();
  const OpCase& c = table[r.op];
  const Backend& be = c.backends[r.backend];
  const Tolerance tol = c.tolerance.at(r.dtype);
  torch::manual_seed(seed + r.shape);
  const Tensors base = c.make_inputs(c.shapes[r.shape]);
  const torch::Device device(be.device);
  const auto param_dtype = r.dtype == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;

  Tensors in(base.size()), in_ref(base.size()), grad_in, grad_ref;
  for (size_t i = 0; i < base.size(); ++i) {
    if (!base[i].defined()) continue;
    if (!base[i].is_floating_point()) {  // indices: as they are, never differentiated
      in[i] = base[i].to(device);
      in_ref[i] = base[i];
      continue;
    }
    auto v = base[i].to(c.is_activation[i] ? r.dtype : param_dtype);
    in[i] = v.to(device).detach().requires_grad_(c.needs_grad[i]);
    in_ref[i] = v.to(torch::kFloat64).detach().requires_grad_(c.needs_grad[i]);
    if (c.needs_grad[i]) {
      grad_in.push_back(in[i]);
      grad_ref.push_back(in_ref[i]);
    }
  }
  samba::kernels::set_poison_outputs(true);
  Tensors out;
  try {
    out = be.run(in, c.shapes[r.shape]);
  } catch (...) {
    samba::kernels::set_poison_outputs(false);
    throw;
  }
  const Tensors ref = c.oracle(in_ref, c.shapes[r.shape]);
  ASSERT_EQ(out.size(), ref.size());
  for (size_t k = 0; k < out.size(); ++k) {
    ASSERT_TRUE(out[k].defined()) << "output " << k;
    EXPECT_EQ(out[k].sizes(), ref[k].sizes()) << "output " << k;
    EXPECT_EQ(out[k].device().type(), be.device) << "output " << k;
    if (k == 0 && c.first_output_in_dtype) EXPECT_EQ(out[k].scalar_type(), r.dtype) << "output " << k;
    if (k == 0 && !c.first_output_in_dtype) EXPECT_EQ(out[k].scalar_type(), torch::kFloat32) << "output " << k;
    EXPECT_LT(rel_err(out[k], ref[k]), tol.forward) << "output " << k;
  }
  torch::Tensor loss, loss_ref;
  for (int k = 0; k < c.differentiable_outputs; ++k) {
    auto w = torch::randn(ref[k].sizes(), torch::kFloat64);
    auto term = (out[k].to(torch::kFloat64) * w.to(device)).sum();
    auto term_ref = (ref[k] * w).sum();
    loss = loss.defined() ? loss + term : term;
    loss_ref = loss_ref.defined() ? loss_ref + term_ref : term_ref;
  }
  auto g = torch::autograd::grad({loss}, grad_in, {}, false, false, /*allow_unused=*/true);
  samba::kernels::set_poison_outputs(false);
  auto g_ref = torch::autograd::grad({loss_ref}, grad_ref, {}, false, false, true);
  for (size_t i = 0, k = 0; i < base.size(); ++i) {
    if (!base[i].defined() || !c.needs_grad[i]) continue;
    ASSERT_TRUE(g[k].defined()) << "grad of input " << i;
    EXPECT_EQ(g[k].sizes(), grad_in[k].sizes()) << "grad of input " << i;
    EXPECT_EQ(g[k].scalar_type(), grad_in[k].scalar_type()) << "grad of input " << i;
    EXPECT_LT(rel_err(g[k], g_ref[k]), tol.grad) << "grad of input " << i;
    ++k;
  }
}

}  // namespace samba::testing::ops
