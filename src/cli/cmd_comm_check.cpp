// `samba comm-check` (hidden): the launch path of `samba train` without a model. It reads the
// launcher's environment, picks the rank's device, rendezvouses, and checks an all-reduce,
// a broadcast and a barrier. Launchers' tests and users debugging a cluster setup run it
// under torchrun / srun / mpirun exactly as they would run training.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "samba/cli/commands.h"
#include "samba/core/error.h"
#include "samba/runtime/comm.h"
#include "samba/runtime/device.h"
#include "samba/runtime/launch_env.h"

namespace samba::cli {

void add_comm_check_command(CLI::App& app) {
  struct Args {
    std::string device = "auto";
    double timeout_s = 60;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("comm-check", "Check the launch environment and the communicator of every rank");
  cmd->group("");  // a diagnostic: not listed in --help
  cmd->add_option("--device", args->device, "auto, cpu or cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->add_option("--timeout", args->timeout_s, "seconds before a missing or dead rank is an error")
      ->check(CLI::PositiveNumber);
  cmd->callback([args] {
    const runtime::LaunchEnv env = runtime::detect_launch_env();
    const torch::Device device = runtime::pick_device(args->device, env);
    runtime::CommOptions opts;
    opts.timeout = std::chrono::milliseconds(static_cast<int64_t>(args->timeout_s * 1000));
    auto comm = runtime::Communicator::create(env, device, opts);
    const int w = comm->world();
    // Each rank contributes rank + 1: the sum names a missing or duplicated rank.
    auto t = torch::full({1}, static_cast<double>(comm->rank() + 1),
                         torch::TensorOptions().dtype(torch::kFloat64).device(device));
    comm->all_reduce(t);
    const double sum = t.item<double>();
    const double expected = w * (w + 1) / 2.0;
    check(sum == expected, "comm-check: all-reduce of rank+1 gave ", sum, " instead of ", expected,
          ": two processes share a rank or a rank is missing");
    const std::string token = comm->broadcast_string(env.describe(), 0);
    comm->barrier();
    std::printf("comm-check: %s, device %s, backend %s: all-reduce %g ok; rank 0 is %s\n", env.describe().c_str(),
                device.str().c_str(), comm->backend().c_str(), sum, token.c_str());
    std::fflush(stdout);
    comm->shutdown();
  });
}

}  // namespace samba::cli
