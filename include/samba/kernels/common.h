#pragma once
// What every kernel op shares (src/kernels/<op>/ each hold: reference.cpp = libtorch CPU path
// and oracle, cpu.cpp = fast CPU path where one exists, *.cu = raw CUDA kernels free of torch,
// cuda.cpp = the thin torch glue and autograd Function, dispatch in the op's public entry).
#include <torch/torch.h>

namespace samba::kernels {

// True when every op must take its libtorch reference. Read once from the environment
// (SAMBA_REFERENCE_KERNELS=1) at first use, not per call.
bool use_reference_kernels();
// Overrides the environment for the rest of the process (tests, benchmarks).
void set_use_reference_kernels(bool on);

// When on, every output and gradient buffer a hand-written kernel allocates is filled with
// NaN before the kernel runs, so a test sees any element the kernel forgot to write.
bool poison_outputs();
void set_poison_outputs(bool on);

// torch::empty, or NaN-filled while poison_outputs() is on.
torch::Tensor new_output(torch::IntArrayRef sizes, const torch::TensorOptions& options);

// True when the build has the CUDA kernels (SAMBA_WITH_CUDA).
bool built_with_cuda_kernels();

// Optional tensors through autograd Functions: autograd describes every Tensor argument by
// its device, which an undefined tensor lacks, so absent inputs travel as empty optionals.
using OptTensor = c10::optional<torch::Tensor>;
inline OptTensor wrap_optional(const torch::Tensor& t) { return t.defined() ? OptTensor(t) : OptTensor(); }
inline torch::Tensor unwrap_optional(const OptTensor& t) { return t.has_value() ? *t : torch::Tensor(); }

}  // namespace samba::kernels
