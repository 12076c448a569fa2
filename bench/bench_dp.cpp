// Data-parallel step anatomy: per-step time split into compute and *exposed* communication
// (the gradient reduction that did not hide behind the backward pass), over a sweep of
// gradient bucket sizes, with and without ZeRO-1.
//   bench_dp <model.yaml> [world=2] [micro_batch=4] [seq_len=model] [steps=5] [bucket_mb list=1,5,25,100] [zero1=0]
// Under torchrun / SLURM / mpirun it uses the launch environment (NCCL on GPUs); started
// plainly with world > 1 it forks `world` ranks on this host (Gloo on CPU).
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "samba/dist/flat_params.h"
#include "samba/dist/grad_reducer.h"
#include "samba/model/model.h"
#include "samba/optim/adamw.h"
#include "samba/runtime/comm.h"
#include "samba/runtime/launch_env.h"
#include "samba/runtime/device.h"

namespace {

std::vector<double> parse_list(const std::string& s) {
  std::vector<double> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::atof(item.c_str()));
  return out;
}

int run_rank(int argc, char** argv) {
  samba::ModelConfig cfg = samba::load_model_config(argv[1]);
  const int64_t batch = argc > 3 ? std::atoll(argv[3]) : 4;
  if (argc > 4 && std::atoll(argv[4]) > 0) cfg.seq_len = std::atoll(argv[4]);
  const int steps = argc > 5 ? std::atoi(argv[5]) : 5;
  const auto buckets = parse_list(argc > 6 ? argv[6] : "1,5,25,100");
  const bool zero1 = argc > 7 && std::atoi(argv[7]) != 0;

  const auto env = samba::runtime::detect_launch_env();
  const torch::Device device = samba::runtime::pick_device("auto", env);
  const bool bf16 = device.is_cuda();
  auto comm = samba::runtime::Communicator::create(env, device);
  torch::manual_seed(0);
  samba::LanguageModel model(cfg);
  model->to(device);
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (const auto& p : model->named_parameters()) named.emplace_back(p.key(), p.value());
  auto tokens = torch::randint(cfg.vocab_size, {batch, cfg.seq_len + 1}, torch::TensorOptions(torch::kLong).device(device));
  if (comm->rank() == 0) {
    std::printf("%s, %d ranks (%s), micro-batch %lld x %lld, %s%s\n", cfg.name.c_str(), comm->world(),
                device.is_cuda() ? "NCCL" : "Gloo", static_cast<long long>(batch), static_cast<long long>(cfg.seq_len),
                bf16 ? "bf16" : "fp32", zero1 ? ", ZeRO-1" : "");
    std::printf("| bucket MB | buckets | launched in backward | step ms | compute ms | exposed comm ms |\n");
    std::printf("|---|---|---|---|---|---|\n");
  }
  for (double mb : buckets) {
    samba::dist::FlatOptions fo;
    fo.world = comm->world();
    fo.bucket_bytes = static_cast<int64_t>(mb * 1024 * 1024);
    samba::dist::FlatParameters flat(named, fo);
    samba::dist::GradReducer reducer(flat, *comm, zero1);
    samba::AdamW opt(flat, flat.ranges_of(comm->rank(), zero1), samba::OptimizerConfig{});
    double total_s = 0, exposed_s = 0;
    int launched = 0;
    for (int i = 0; i < steps + 2; ++i) {
      comm->barrier();
      const auto start = std::chrono::steady_clock::now();
      flat.zero_grad();
      reducer.begin_backward(true);
      {
        samba::runtime::AutocastScope autocast(device, bf16);
        auto loss = model->loss(tokens.slice(1, 0, cfg.seq_len), tokens.slice(1, 1, cfg.seq_len + 1));
        loss.backward();
      }
      reducer.finish();
      auto sq = opt.grad_sq_sum();
      if (zero1) comm->all_reduce(sq);
      const double norm = std::sqrt(sq.item<double>());
      opt.step(1e-5, norm > 1 ? 1 / norm : 1);
      if (zero1) samba::dist::gather_parameter_pieces(flat, *comm);
      if (device.is_cuda()) torch::cuda::synchronize();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (i >= 2) {  // warm-up steps excluded
        total_s += s;
        exposed_s += reducer.stats().exposed_seconds;
        launched = reducer.stats().buckets_launched_in_backward;
      }
    }
    const double step_ms = 1e3 * comm->all_reduce_double(total_s / steps, samba::runtime::ReduceOp::Max);
    const double comm_ms = 1e3 * comm->all_reduce_double(exposed_s / steps, samba::runtime::ReduceOp::Max);
    if (comm->rank() == 0)
      std::printf("| %g | %zu | %d | %.1f | %.1f | %.1f |\n", mb, flat.buckets().size(), launched, step_ms,
                  step_ms - comm_ms, comm_ms);
  }
  comm->shutdown();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <model.yaml> [world=2] [micro_batch=4] [seq_len=model] [steps=5] [bucket_mb=1,5,25,100] [zero1=0]\n", argv[0]);
    return 2;
  }
  try {
    const int world = argc > 2 ? std::atoi(argv[2]) : 2;
    if (world > 1 && !std::getenv("RANK") && !std::getenv("SLURM_PROCID") && !std::getenv("OMPI_COMM_WORLD_RANK")) {
      const std::string port = std::to_string(29500 + (::getpid() % 2000));
      std::vector<pid_t> pids;
      for (int r = 0; r < world; ++r) {
        pid_t pid = ::fork();
        if (pid == 0) {
          ::setenv("RANK", std::to_string(r).c_str(), 1);
          ::setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
          ::setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
          ::setenv("LOCAL_WORLD_SIZE", std::to_string(world).c_str(), 1);
          ::setenv("MASTER_ADDR", "127.0.0.1", 1);
          ::setenv("MASTER_PORT", port.c_str(), 1);
          ::execv("/proc/self/exe", argv);
          std::_Exit(127);
        }
        pids.push_back(pid);
      }
      int rc = 0;
      for (pid_t p : pids) {
        int status = 0;
        ::waitpid(p, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) rc = 1;
      }
      return rc;
    }
    return run_rank(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
