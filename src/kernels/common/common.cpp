#include "samba/kernels/common.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace samba::kernels {
namespace {

bool env_reference() {
  const char* v = std::getenv("SAMBA_REFERENCE_KERNELS");
  return v != nullptr && std::strcmp(v, "1") == 0;
}
// Initialised once, before main in practice; atomics so a test's override is seen by the
// threads of autograd's engine.
std::atomic<bool>& reference_flag() {
  static std::atomic<bool> flag{env_reference()};
  return flag;
}
std::atomic<bool> g_poison{false};

}  // namespace

bool use_reference_kernels() { return reference_flag().load(std::memory_order_relaxed); }
void set_use_reference_kernels(bool on) { reference_flag().store(on); }

bool poison_outputs() { return g_poison.load(std::memory_order_relaxed); }
void set_poison_outputs(bool on) { g_poison.store(on); }

torch::Tensor new_output(torch::IntArrayRef sizes, const torch::TensorOptions& options) {
  if (poison_outputs()) return torch::full(sizes, std::numeric_limits<double>::quiet_NaN(), options);
  return torch::empty(sizes, options);
}

bool built_with_cuda_kernels() {
#ifdef SAMBA_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace samba::kernels
