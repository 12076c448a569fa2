// The fused CUDA AdamW over flat buffers against the CPU path (same fp32 arithmetic in
// separate kernels), on the replicated layout and on ZeRO-1 pieces.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "samba/dist/flat_params.h"
#include "samba/optim/adamw.h"

TEST(AdamWGpu, FusedKernelMatchesCpuPath) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU";
  for (bool sharded : {false, true}) {
    torch::manual_seed(0);
    std::vector<std::pair<std::string, torch::Tensor>> cpu, gpu;
    for (int i = 0; i < 5; ++i) {
      auto w = torch::randn({37 * (i + 1), 3});
      cpu.emplace_back("p" + std::to_string(i), w.clone().set_requires_grad(true));
      gpu.emplace_back("p" + std::to_string(i), w.clone().to(torch::kCUDA).set_requires_grad(true));
    }
    samba::dist::FlatOptions o;
    o.world = sharded ? 3 : 1;
    o.bucket_bytes = 256 * 4;
    samba::dist::FlatParameters fc(cpu, o), fg(gpu, o);
    samba::OptimizerConfig cfg;
    cfg.weight_decay = 0.1;
    const int rank = sharded ? 1 : 0;
    samba::AdamW oc(fc, fc.ranges_of(rank, sharded), cfg), og(fg, fg.ranges_of(rank, sharded), cfg);
    for (int step = 0; step < 5; ++step) {
      auto g = torch::randn({fc.numel()});
      fc.grads().copy_(g);
      fg.grads().copy_(g.to(torch::kCUDA));
      oc.step(3e-3, 0.7);
      og.step(3e-3, 0.7);
    }
    EXPECT_TRUE(torch::allclose(fc.params(), fg.params().cpu(), 1e-5, 1e-6)) << "sharded " << sharded;
    EXPECT_TRUE(torch::allclose(oc.exp_avg_sq(), og.exp_avg_sq().cpu(), 1e-5, 1e-9)) << "sharded " << sharded;
  }
}
