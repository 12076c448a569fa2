// The NCCL path on one GPU (CommOptions::force_group builds the TCPStore and ProcessGroupNCCL
// even for world 1), as the GPU machine runs it; skipped without a GPU or without NCCL.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "multiprocess.h"
#include "samba/core/error.h"
#include "samba/runtime/comm.h"
#include "samba/runtime/device.h"

using namespace samba::runtime;

TEST(CommGpu, NcclGroupOfOneRank) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no GPU";
  LaunchEnv env;
  env.master_port = samba::testing::free_port();
  const torch::Device device = pick_device("cuda", env);
  CommOptions opts;
  opts.timeout = std::chrono::seconds(60);
  opts.force_group = true;
  std::unique_ptr<Communicator> comm;
  try {
    comm = Communicator::create(env, device, opts);
  } catch (const samba::Error& e) {
    if (std::string(e.what()).find("has no NCCL") != std::string::npos) GTEST_SKIP() << e.what();
    throw;
  }
  EXPECT_EQ(comm->backend(), "nccl");
  const auto on = torch::TensorOptions().device(device);
  auto t = torch::arange(8, on.dtype(torch::kFloat32));
  comm->all_reduce(t, ReduceOp::Max, /*async=*/true)->wait();
  EXPECT_TRUE(t.cpu().equal(torch::arange(8, torch::kFloat32)));
  // ZeRO-1's in-place pattern: the output is this rank's slice of the input.
  auto flat = torch::ones({16}, on);
  comm->reduce_scatter(flat.narrow(0, 0, 16), flat);
  auto gathered = torch::empty({16}, on);
  comm->all_gather(gathered, flat, /*async=*/true)->wait();
  EXPECT_TRUE(gathered.cpu().equal(torch::ones({16})));
  EXPECT_EQ(comm->broadcast_string("nccl ok"), "nccl ok");
  EXPECT_EQ(comm->all_reduce_int(41) + 1, 42);
  comm->barrier();
  comm->shutdown();
}

TEST(CommGpu, CachingAllocatorMemory) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no GPU";
  const torch::Device device(torch::kCUDA, 0);
  reset_peak_memory(device);
  const auto before = memory_stats(device);
  auto big = torch::empty({64 * 1024 * 1024}, torch::TensorOptions().device(device));  // 256 MiB
  const auto during = memory_stats(device);
  EXPECT_GE(during.allocated - before.allocated, 256.0 * 1024 * 1024);
  EXPECT_GE(during.reserved, during.allocated);
  big = torch::Tensor();
  const auto after = memory_stats(device);
  EXPECT_LT(after.allocated, during.allocated);
  EXPECT_GE(after.peak_allocated, during.allocated);  // the peak remembers
  reset_peak_memory(device);
  EXPECT_LT(memory_stats(device).peak_allocated, during.allocated);
  EXPECT_GT(peak_flops(device, /*bf16=*/true), 1e12);
}
