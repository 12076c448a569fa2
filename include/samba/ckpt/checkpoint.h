#pragma once
// Checkpoints: one directory per step, written to a temporary directory, fsynced, renamed,
// then marked complete; a manifest records the CRC32C of every file so a truncated or
// bit-flipped checkpoint is detected on load. Tensors are safetensors.
//
// Format v2 (data parallel; every rank takes part in the save):
//   <root>/step_00000120/
//     model.safetensors         canonical parameter names (model.h), written once (rank 0)
//     rank_00000.safetensors    each rank's own state: its optimizer shard, its RNG states
//     rank_00001.safetensors    ...
//     trainer.json              step, tokens seen, data cursor, world size, ... (rank 0)
//     model.yaml, train.yaml    resolved model config and training recipe (rank 0)
//     manifest.json             version 2, world size, file -> {bytes, crc32c}, and per rank
//                               the layout of its shard ("ranks": [{file, meta}])
//     COMPLETE                  written by rank 0 after every rank's files are in place
// Format v1 (one writer) had optimizer.safetensors instead of rank files; it still loads.
#include <torch/torch.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace samba::runtime {
class Communicator;
}

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
  NamedTensors model;              // written by rank 0 only (other ranks may leave it empty)
  NamedTensors optimizer;          // this rank's own tensors -> rank_<r>.safetensors
  nlohmann::json rank_meta = nlohmann::json::object();  // this rank's shard layout, kept in the manifest
  nlohmann::json trainer_state;    // rank 0
  std::string model_config_yaml;   // rank 0
  std::string train_config_yaml;   // rank 0
};

// Writes <root>/step_<step> atomically (see above) and keeps only the newest `keep_last`
// complete checkpoints (0 = keep all). Returns the checkpoint directory. With a distributed
// communicator every rank must call it (a collective): rank 0 creates the directory, every
// rank writes its own file, a failure on any rank fails the save on every rank, and rank 0
// marks it COMPLETE after a barrier. The directory must be on a filesystem all ranks share.
std::string save_checkpoint(const std::string& root, int64_t step, const CheckpointContent& content, int keep_last,
                            runtime::Communicator* comm = nullptr);
// Newest complete checkpoint directory under root, or "" if there is none. `skipped`, when
// given, receives the newer step directories that were passed over (incomplete ones).
std::string find_latest_checkpoint(const std::string& root, std::vector<std::string>* skipped = nullptr);
// `dir` itself if it is a checkpoint step directory; otherwise the newest complete checkpoint
// under `dir` or `dir/checkpoints` (a run directory). Throws naming both places if none.
std::string resolve_checkpoint_dir(const std::string& dir);
// Checks the marker, the manifest and every file's size and CRC32C; throws samba::Error naming
// the file and the problem.
void verify_checkpoint(const std::string& dir);

struct RankFile {
  int rank = 0;
  std::string path;     // rank_<r>.safetensors, or v1's optimizer.safetensors
  nlohmann::json meta;  // the shard layout the rank stored
};

struct Checkpoint {
  std::string dir;
  int version = 2;
  int world = 1;                // ranks that wrote it
  NamedTensors model;
  nlohmann::json trainer_state;
  std::string model_config_yaml;
  std::string train_config_yaml;
  std::vector<RankFile> ranks;  // v1: one entry, rank 0, optimizer.safetensors with per-parameter moments
};
// verify_checkpoint + read everything but the rank files (read those on demand, e.g. with
// io::SafetensorsFile, which maps them).
Checkpoint load_checkpoint(const std::string& dir);

}  // namespace samba::ckpt
