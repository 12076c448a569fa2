// The chunked LM head + cross-entropy on CUDA, where the softmax, loss and logits gradient run
// in one kernel (src/kernels/linear_cross_entropy/xent.cu, in place over the logits), against
// the fp64 reference on the CPU: loss and both gradients, bf16 and fp32, the production vocab
// and odd ones (rows that are not 16-byte aligned), ignored targets, a last chunk that is
// short. Plus bitwise determinism and the kernel's contract on out-of-range targets.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "samba/kernels/common.h"
#include "samba/kernels/linear_cross_entropy.h"
#include "test_util.h"

namespace {
namespace K = samba::kernels;

bool have_cuda_kernels() { return torch::cuda::is_available() && K::built_with_cuda_kernels(); }

double rel_err(const torch::Tensor& a, const torch::Tensor& b) {
  return samba::testing::rel_error(a.detach().to(torch::kCPU, torch::kFloat64), b.detach().to(torch::kCPU));
}

struct Case {
  int64_t rows, d, vocab, chunk, ignore_index;
  torch::ScalarType dtype;
};

std::string name(const Case& c) {
  return std::string(c.dtype == torch::kBFloat16 ? "bf16" : "fp32") + " rows " + std::to_string(c.rows) + " V " +
         std::to_string(c.vocab) + " chunk " + std::to_string(c.chunk);
}

// fp64 inputs already rounded to the case's dtype (so the oracle sees what the GPU sees), about
// a fifth of the targets ignored, and a run of ignored rows that fills a whole chunk.
struct Inputs {
  torch::Tensor hidden, weight, targets;
};
Inputs make_inputs(const Case& c, uint64_t seed) {
  torch::manual_seed(seed);
  auto o = torch::TensorOptions().dtype(torch::kFloat64);
  Inputs in;
  in.hidden = torch::randn({c.rows, c.d}, o).to(c.dtype).to(torch::kFloat64);
  // Logits of a few units, as a trained LM head gives, so the softmax is far from uniform.
  in.weight = (torch::randn({c.vocab, c.d}, o) * (2.0 / std::sqrt(static_cast<double>(c.d))))
                  .to(c.dtype)
                  .to(torch::kFloat64);
  in.targets = torch::randint(c.vocab, {c.rows}, torch::kLong);
  in.targets.masked_fill_(torch::rand({c.rows}) < 0.2, c.ignore_index);
  if (c.rows >= 2 * c.chunk) in.targets.narrow(0, c.chunk, c.chunk).fill_(c.ignore_index);
  return in;
}

struct Result {
  torch::Tensor loss, grad_hidden, grad_weight;
};

// The fused op on the GPU; hidden in the case's dtype (as under autocast), weight fp32 (a
// parameter): the op casts it to hidden's dtype for the matmuls.
Result run_gpu(const Case& c, const Inputs& in) {
  auto h = in.hidden.to(torch::kCUDA, c.dtype).requires_grad_();
  auto w = in.weight.to(torch::kCUDA, torch::kFloat32).requires_grad_();
  auto loss = K::linear_cross_entropy(h, w, in.targets.to(torch::kCUDA), c.ignore_index, c.chunk);
  auto g = torch::autograd::grad({loss}, {h, w});
  return {loss.detach(), g[0], g[1]};
}

Result run_oracle(const Case& c, const Inputs& in) {
  auto h = in.hidden.clone().requires_grad_();
  auto w = in.weight.clone().requires_grad_();
  auto loss = K::linear_cross_entropy_reference(h, w, in.targets, c.ignore_index);
  auto g = torch::autograd::grad({loss}, {h, w});
  return {loss.detach(), g[0], g[1]};
}

std::vector<Case> cases() {
  std::vector<Case> out;
  for (auto dtype : {torch::kBFloat16, torch::kFloat32}) {
    out.push_back({700, 64, 32000, 256, -1, dtype});  // the production vocab, 700 = 2 x 256 + 188
    out.push_back({333, 48, 1001, 100, -100, dtype});  // odd vocab: rows start off 16-byte boundaries
    out.push_back({50, 16, 7, 16, -1, dtype});         // a row shorter than one 16-byte vector
  }
  return out;
}

TEST(LinearCrossEntropyGpu, MatchesFp64Oracle) {
  if (!have_cuda_kernels()) GTEST_SKIP() << "no CUDA device or no CUDA kernels in this build";
  K::set_poison_outputs(true);  // a row loss the kernel forgot would make the loss NaN
  for (const auto& c : cases()) {
    SCOPED_TRACE(name(c));
    const auto in = make_inputs(c, 11);
    const auto got = run_gpu(c, in);
    const auto want = run_oracle(c, in);
    const bool bf16 = c.dtype == torch::kBFloat16;
    EXPECT_LT(rel_err(got.loss, want.loss), bf16 ? 5e-3 : 1e-5) << got.loss.item<double>() << " vs "
                                                                << want.loss.item<double>();
    EXPECT_LT(rel_err(got.grad_hidden, want.grad_hidden), bf16 ? 2e-2 : 1e-4);
    EXPECT_LT(rel_err(got.grad_weight, want.grad_weight), bf16 ? 2e-2 : 1e-4);
    EXPECT_EQ(got.grad_hidden.scalar_type(), c.dtype);
    EXPECT_EQ(got.grad_weight.scalar_type(), torch::kFloat32);
  }
  K::set_poison_outputs(false);
}

TEST(LinearCrossEntropyGpu, IsBitwiseDeterministic) {
  if (!have_cuda_kernels()) GTEST_SKIP() << "no CUDA device or no CUDA kernels in this build";
  for (auto dtype : {torch::kBFloat16, torch::kFloat32}) {
    const Case c{1500, 64, 32000, 512, -1, dtype};
    SCOPED_TRACE(name(c));
    const auto in = make_inputs(c, 12);
    const auto a = run_gpu(c, in), b = run_gpu(c, in);
    EXPECT_TRUE(torch::equal(a.loss, b.loss));
    EXPECT_TRUE(torch::equal(a.grad_hidden, b.grad_hidden));
    EXPECT_TRUE(torch::equal(a.grad_weight, b.grad_weight));
  }
}

// A target outside [0, V) that is not the ignore index: NaN loss (the kernel cannot raise as
// torch does without a host sync), never a silently wrong finite loss.
TEST(LinearCrossEntropyGpu, OutOfRangeTargetGivesNaN) {
  if (!have_cuda_kernels()) GTEST_SKIP() << "no CUDA device or no CUDA kernels in this build";
  const Case c{20, 16, 1001, 8, -1, torch::kBFloat16};
  auto in = make_inputs(c, 13);
  in.targets[3].fill_(c.vocab);
  EXPECT_TRUE(std::isnan(run_gpu(c, in).loss.item<double>()));
}

}  // namespace
