// runtime/device: the device of a rank, the peak-FLOPs table, memory readings.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "samba/core/error.h"
#include "samba/runtime/device.h"

using namespace samba::runtime;

namespace {
LaunchEnv rank_env(int rank, int world, int local_rank) {
  LaunchEnv env;
  env.launcher = "torchrun";
  env.rank = rank;
  env.world = world;
  env.local_rank = local_rank;
  env.local_world = world;
  return env;
}
}  // namespace

TEST(Device, PeakFlopsTableMatchesRealDeviceNames) {
  // Names as cudaGetDeviceProperties reports them.
  auto bf16 = [](const std::string& name) { return gpu_peak_flops(name).value().bf16; };
  EXPECT_DOUBLE_EQ(bf16("NVIDIA H100 80GB HBM3"), 989.4e12);  // SXM
  EXPECT_DOUBLE_EQ(bf16("NVIDIA H100 PCIe"), 756.5e12);
  EXPECT_DOUBLE_EQ(bf16("NVIDIA H100 NVL"), 835.5e12);
  EXPECT_DOUBLE_EQ(bf16("NVIDIA H200"), 989.4e12);
  EXPECT_DOUBLE_EQ(bf16("NVIDIA A100-SXM4-80GB"), 312e12);
  EXPECT_DOUBLE_EQ(bf16("NVIDIA A100 80GB PCIe"), 312e12);
  EXPECT_DOUBLE_EQ(bf16("NVIDIA L40S"), 362.05e12);
  EXPECT_DOUBLE_EQ(bf16("NVIDIA L40"), 181.05e12);
  EXPECT_DOUBLE_EQ(bf16("NVIDIA L4"), 121e12);
  EXPECT_DOUBLE_EQ(bf16("NVIDIA A10"), 125e12);
  EXPECT_DOUBLE_EQ(gpu_peak_flops("NVIDIA H100 80GB HBM3")->fp32, 66.9e12);
  EXPECT_DOUBLE_EQ(gpu_peak_flops("NVIDIA A100-SXM4-40GB")->fp32, 19.5e12);
  // Whole tokens only: neither a prefix nor a different board of a similar name matches.
  EXPECT_FALSE(gpu_peak_flops("NVIDIA A10G").has_value());
  EXPECT_FALSE(gpu_peak_flops("Tesla V100-SXM2-16GB").has_value());
  EXPECT_FALSE(gpu_peak_flops("cpu").has_value());
}

TEST(Device, CpuPeakIsMeasured) {
  const double peak = peak_flops(torch::kCPU, /*bf16=*/false);
  EXPECT_GT(peak, 1e8);   // any CPU does 0.1 GFLOP/s
  EXPECT_LT(peak, 1e14);  // and no CPU 100 TFLOP/s
}

TEST(Device, RankDeviceOnCpuIgnoresRanks) {
  EXPECT_EQ(pick_device("cpu", rank_env(3, 4, 3)), torch::Device(torch::kCPU));
  if (!torch::cuda::is_available()) {
    EXPECT_EQ(pick_device("auto", rank_env(1, 2, 1)), torch::Device(torch::kCPU));
    const auto err = [] {
      try {
        pick_device("cuda", rank_env(0, 2, 0));
      } catch (const samba::Error& e) {
        return std::string(e.what());
      }
      return std::string();
    }();
    EXPECT_NE(err.find("no CUDA GPU"), std::string::npos) << err;
  }
}

TEST(Device, RankDeviceOnCudaIsLocalRank) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no GPU";
  const int gpus = static_cast<int>(torch::cuda::device_count());
  EXPECT_EQ(pick_device("auto", rank_env(gpus - 1, gpus, gpus - 1)), torch::Device(torch::kCUDA, gpus - 1));
  if (gpus > 1) {
    EXPECT_THROW(pick_device("cuda", rank_env(gpus, gpus + 1, gpus)), samba::Error);
  }
}

TEST(Device, CpuMemoryFollowsAllocations) {
  const auto before = memory_stats(torch::kCPU);
  EXPECT_GT(before.allocated, 0);
  EXPECT_GE(before.peak_allocated, before.allocated);
  // 256 MiB written, so resident: the resident size and its high-water mark grow.
  auto big = torch::ones({64 * 1024 * 1024}, torch::kFloat32);
  const auto during = memory_stats(torch::kCPU);
  EXPECT_GT(during.allocated, before.allocated + 200.0 * 1024 * 1024);
  EXPECT_GE(during.peak_allocated, during.allocated);
  big = torch::Tensor();
  reset_peak_memory(torch::kCPU);
  const auto after = memory_stats(torch::kCPU);
  EXPECT_LT(after.peak_allocated, during.peak_allocated);  // a new high-water mark
  EXPECT_GT(memory_in_use_bytes(torch::kCPU), 0);
}
