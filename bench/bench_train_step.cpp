// Training-step throughput of whole models: forward + backward + clip + AdamW (flat buffers, as
// the trainer runs it) on random tokens.
//   bench_train_step <model.yaml> [micro_batch] [seq_len] [steps]
// Prints one table row per model: tokens/s, ms/step, MFU against the device peak.
// SAMBA_BENCH_HOST=1 first prints the host time to issue one step against the step's wall time.
#include <dlfcn.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "samba/dist/flat_params.h"
#include "samba/model/analysis.h"
#include "samba/model/model.h"
#include "samba/optim/adamw.h"
#include "samba/runtime/device.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <model.yaml> [micro_batch=8] [seq_len=model] [steps=10]\n", argv[0]);
    return 2;
  }
  try {
    samba::ModelConfig cfg = samba::load_model_config(argv[1]);
    const int64_t batch = argc > 2 ? std::atoll(argv[2]) : 8;
    if (argc > 3) cfg.seq_len = std::atoll(argv[3]);
    const int steps = argc > 4 ? std::atoi(argv[4]) : 10;
    if (std::getenv("SAMBA_BENCH_DETERMINISTIC")) samba::runtime::use_deterministic_algorithms();
    const torch::Device device = samba::runtime::pick_device("auto");
    const bool bf16 = device.is_cuda();
    torch::manual_seed(0);
    samba::LanguageModel model(cfg);
    model->to(device);
    std::vector<std::pair<std::string, torch::Tensor>> named;
    for (const auto& p : model->named_parameters()) named.emplace_back(p.key(), p.value());
    samba::dist::FlatParameters flat(named, {});
    samba::AdamW opt(flat, flat.ranges_of(0, false), samba::OptimizerConfig{});
    auto tokens = torch::randint(cfg.vocab_size, {batch, cfg.seq_len + 1}, torch::TensorOptions(torch::kLong).device(device));
    using Clock = std::chrono::steady_clock;
    // marks (optional): host times after the forward, the backward and the update.
    auto one_step = [&](Clock::time_point* marks = nullptr) {
      flat.zero_grad();
      torch::Tensor loss;
      {
        samba::runtime::AutocastScope autocast(device, bf16);
        loss = model->loss(tokens.slice(1, 0, cfg.seq_len), tokens.slice(1, 1, cfg.seq_len + 1));
      }
      if (marks) marks[0] = Clock::now();
      loss.backward();
      if (marks) marks[1] = Clock::now();
      // Clip and update decided on the device, as the trainer's step does: no host sync.
      const auto norm = opt.grad_sq_sum().to(torch::kFloat64).sqrt();
      opt.step(1e-4, torch::stack({samba::clip_scale(norm, 1.0), torch::ones_like(norm)}));
      if (marks) marks[2] = Clock::now();
      return loss.detach();
    };
    one_step();  // warm-up (allocator, kernels)
    one_step().item<double>();
    if (std::getenv("SAMBA_BENCH_PROFILE")) {
      // One step between cudaProfilerStart/Stop, for `ncu --profile-from-start off` (the
      // runtime's symbols are looked up at run time: no CUDA headers in this file).
      using Fn = int (*)();
      auto start_fn = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "cudaProfilerStart"));
      auto stop_fn = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "cudaProfilerStop"));
      if (!start_fn || !stop_fn) throw std::runtime_error("SAMBA_BENCH_PROFILE: cudaProfilerStart not found");
      start_fn();
      one_step();
      stop_fn();
      std::printf("profiled one step\n");
      return 0;
    }
    if (std::getenv("SAMBA_BENCH_HOST")) {
      // Host time to issue one step on an idle queue, against its wall time: where the issue time
      // comes close to the step's, the device waits for the host (launch and autograd overhead,
      // or a synchronisation inside the step).
      const auto ms = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count() * 1e3; };
      for (int i = 0; i < 3; ++i) {
        Clock::time_point marks[3];
        const auto t0 = Clock::now();
        const torch::Tensor l = one_step(marks);
        (void)l.item<double>();
        const auto t1 = Clock::now();
        std::printf("host: issue forward %.1f, backward %.1f, update %.1f ms; step %.1f ms\n", ms(t0, marks[0]),
                    ms(marks[0], marks[1]), ms(marks[1], marks[2]), ms(t0, t1));
      }
    }
    const auto start = std::chrono::steady_clock::now();
    torch::Tensor last;
    for (int i = 0; i < steps; ++i) last = one_step();
    (void)last.item<double>();  // waits for the device
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / steps;
    const auto summary = samba::summarize(cfg, batch, bf16 ? 2 : 4);
    const double tok_s = static_cast<double>(batch * cfg.seq_len) / s;
    const double peak = samba::runtime::peak_flops(device, bf16);
    std::printf("| %-22s | %-6s | %5lld x %5lld | %9.1f | %11.0f | %6.2f%% |\n", cfg.name.c_str(),
                device.is_cuda() ? "cuda" : "cpu", static_cast<long long>(batch), static_cast<long long>(cfg.seq_len),
                s * 1e3, tok_s, 100.0 * summary.training_flops_per_token * tok_s / peak);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
