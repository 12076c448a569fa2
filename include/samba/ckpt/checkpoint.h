#pragma once
// Checkpoints: one directory per step, written to a temporary directory, fsynced, renamed,
// then marked complete; a manifest records the CRC32C of every file so a truncated or
// bit-flipped checkpoint is detected on load. Model and optimizer tensors are safetensors.
//
//   <root>/step_00000120/
//     model.safetensors       canonical parameter names (model.h)
//     optimizer.safetensors   "<param>.exp_avg", "<param>.exp_avg_sq", ...
//     trainer.json            step, tokens seen, data cursor, RNG state, ...
//     model.yaml              resolved model config (samba::to_yaml)
//     train.yaml              resolved training recipe
//     manifest.json           file -> {bytes, crc32c}
//     COMPLETE                written last
#include <torch/torch.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace samba::ckpt {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// torch <-> safetensors (any dtype safetensors knows; tensors are written contiguous, from CPU).
void save_tensors(const std::string& path, const NamedTensors& tensors,
                  const std::map<std::string, std::string>& metadata = {});
std::map<std::string, torch::Tensor> load_tensors(const std::string& path);

// Copies `tensors` into the module's parameters and buffers by canonical name; a missing or
// unexpected name or a shape mismatch is an error naming it and `origin`.
void load_state_into(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                     const std::string& origin);
// The module's parameters then buffers under their canonical names: what load_state_into expects.
NamedTensors module_state(const torch::nn::Module& module);

struct CheckpointContent {
  NamedTensors model;
  NamedTensors optimizer;
  nlohmann::json trainer_state;
  std::string model_config_yaml;
  std::string train_config_yaml;
};

// Writes <root>/step_<step> atomically (see above) and keeps only the newest `keep_last`
// complete checkpoints (0 = keep all). Returns the checkpoint directory.
std::string save_checkpoint(const std::string& root, int64_t step, const CheckpointContent& content, int keep_last);
// Newest complete checkpoint directory under root, or "" if there is none.
std::string find_latest_checkpoint(const std::string& root);
// `dir` itself if it is a checkpoint step directory; otherwise the newest complete checkpoint
// under `dir` or `dir/checkpoints` (a run directory). Throws naming both places if none.
std::string resolve_checkpoint_dir(const std::string& dir);
// Checks the marker, the manifest and every file's size and CRC32C; throws samba::Error naming
// the file and the problem.
void verify_checkpoint(const std::string& dir);
// verify_checkpoint + read everything.
CheckpointContent load_checkpoint(const std::string& dir);

}  // namespace samba::ckpt
