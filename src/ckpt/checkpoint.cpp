#include "samba/ckpt/checkpoint.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>

#include "samba/core/error.h"
#include "samba/core/log.h"
#include "samba/io/files.h"
#include "samba/io/safetensors.h"
#include "samba/runtime/comm.h"

namespace samba::ckpt {
namespace {

namespace fs = std::filesystem;

constexpr const char* kManifest = "manifest.json";
constexpr const char* kMarker = "COMPLETE";
constexpr const char* kTmpPrefix = ".tmp-";
constexpr const char* kReplacedSuffix = "-replaced";
// The files every checkpoint has; a manifest that omits one was not written by us. Version 1
// also had optimizer.safetensors; version 2 has one rank_<r>.safetensors per rank.
const char* const kSharedFiles[] = {"model.safetensors", "trainer.json", "model.yaml", "train.yaml"};
constexpr const char* kV1Optimizer = "optimizer.safetensors";
constexpr int kVersion = 2;
const char* const kDamagedFix = "; delete this checkpoint directory to resume from the previous one";

struct DtypeCode {
  c10::ScalarType type;
  const char* code;
};
constexpr DtypeCode kDtypeCodes[] = {
    {torch::kFloat32, "F32"}, {torch::kFloat64, "F64"}, {torch::kBFloat16, "BF16"}, {torch::kFloat16, "F16"},
    {torch::kInt64, "I64"},   {torch::kInt32, "I32"},   {torch::kInt16, "I16"},     {torch::kInt8, "I8"},
    {torch::kUInt8, "U8"},    {torch::kBool, "BOOL"},
};

const char* code_of(c10::ScalarType t) {
  for (const auto& d : kDtypeCodes)
    if (d.type == t) return d.code;
  return nullptr;
}

std::optional<c10::ScalarType> type_of(const std::string& code) {
  for (const auto& d : kDtypeCodes)
    if (code == d.code) return d.type;
  return std::nullopt;
}

std::string rank_file(int rank) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "rank_%05d.safetensors", rank);
  return buf;
}

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%08lld", static_cast<long long>(step));
  return buf;
}

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// "step_00000120" -> 120; anything else (including names we did not create) -> nullopt.
std::optional<int64_t> parse_step_name(const std::string& name) {
  if (name.rfind("step_", 0) != 0) return std::nullopt;
  std::string digits = name.substr(5);
  if (digits.size() < 8 || digits.size() > 18 || !all_digits(digits)) return std::nullopt;
  return std::stoll(digits);
}

// ".tmp-step_00000120-<pid>[-replaced]" -> pid; anything else -> nullopt.
std::optional<long> parse_tmp_name(const std::string& name) {
  if (name.rfind(kTmpPrefix, 0) != 0) return std::nullopt;
  std::string rest = name.substr(std::strlen(kTmpPrefix));
  const std::string suffix = kReplacedSuffix;
  if (rest.size() > suffix.size() && rest.compare(rest.size() - suffix.size(), suffix.size(), suffix) == 0)
    rest.resize(rest.size() - suffix.size());
  auto dash = rest.rfind('-');
  if (dash == std::string::npos || !parse_step_name(rest.substr(0, dash))) return std::nullopt;
  std::string pid = rest.substr(dash + 1);
  if (!all_digits(pid) || pid.size() > 9) return std::nullopt;
  return std::stol(pid);
}

// A real directory (not a symlink to one), so pruning never follows a link out of the root.
bool is_real_dir(const fs::path& p) {
  std::error_code ec;
  return fs::symlink_status(p, ec).type() == fs::file_type::directory;
}

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

struct StepDir {
  int64_t step;
  fs::path path;
  bool complete;
};

std::vector<StepDir> list_step_dirs(const fs::path& root) {
  std::vector<StepDir> out;
  std::error_code ec;
  fs::directory_iterator it(root, ec);
  if (ec) return out;
  for (const auto& entry : it) {
    auto step = parse_step_name(entry.path().filename().string());
    if (step && is_real_dir(entry.path())) out.push_back({*step, entry.path(), is_file(entry.path() / kMarker)});
  }
  std::sort(out.begin(), out.end(), [](const StepDir& a, const StepDir& b) { return a.step > b.step; });
  return out;
}

void rename_or_fail(const fs::path& from, const fs::path& to) {
  if (::rename(from.c_str(), to.c_str()) != 0)
    fail("cannot rename checkpoint directory '", from.string(), "' to '", to.string(), "': ", std::strerror(errno),
         "; check permissions and that both are on the same filesystem");
}

void remove_quietly(const fs::path& p, const char* why) {
  std::error_code ec;
  io::remove_tree(fs::path(p).string(), ec);
  if (ec) spdlog::warn("checkpoint pruning: cannot delete {} ({}): {}", p.string(), why, ec.message());
}

bool process_alive(long pid) { return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM); }

// Keeps the newest keep_last complete checkpoints at or below `step` (the timeline being
// written); newer ones are left alone because they may belong to a run resumed from further
// back, and deleting them is the user's call. Crash leftovers go: incomplete step dirs older
// than `step` and temp dirs whose writer is no longer running.
void prune(const fs::path& root, int64_t step, int keep_last) {
  int kept = 0;
  for (const auto& d : list_step_dirs(root)) {
    if (d.step > step) continue;
    if (!d.complete) {
      if (d.step < step) remove_quietly(d.path, "incomplete checkpoint left by a crash");
      continue;
    }
    if (keep_last > 0 && ++kept > keep_last) remove_quietly(d.path, "older than keep_last");
  }
  std::error_code ec;
  fs::directory_iterator it(root, ec);
  if (ec) return;
  std::vector<fs::path> stale;
  for (const auto& entry : it) {
    auto pid = parse_tmp_name(entry.path().filename().string());
    if (!pid || !is_real_dir(entry.path())) continue;
    if (*pid == static_cast<long>(::getpid()) || !process_alive(*pid)) stale.push_back(entry.path());
  }
  for (const auto& p : stale) remove_quietly(p, "temporary directory left by an interrupted save");
}

std::string list_some(const std::vector<std::string>& names, size_t limit = 5) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < limit; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > limit) s += ", ... (" + std::to_string(names.size()) + " in all)";
  return s;
}

std::string shape_str(torch::IntArrayRef sizes) {
  std::string s = "[";
  for (size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + "]";
}

NamedTensors to_named(std::map<std::string, torch::Tensor> m) {
  NamedTensors out;
  out.reserve(m.size());
  for (auto& [name, t] : m) out.emplace_back(name, std::move(t));
  return out;
}

}  // namespace

void save_tensors(const std::string& path, const NamedTensors& tensors,
                  const std::map<std::string, std::string>& metadata) {
  // The host copies must outlive the views until the file is written.
  std::vector<torch::Tensor> host;
  host.reserve(tensors.size());
  std::vector<io::TensorView> views;
  views.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    check(t.defined(), "save_tensors('", path, "'): tensor '", name,
          "' is undefined; pass only initialised parameters and buffers");
    const char* code = code_of(t.scalar_type());
    check(code != nullptr, "save_tensors('", path, "'): tensor '", name, "' has dtype ", t.scalar_type(),
          ", which safetensors cannot store here; cast it to float32/bfloat16/float16/int64/int32/int16/int8/uint8/bool");
    host.push_back(t.detach().to(torch::kCPU).contiguous());
    const auto& h = host.back();
    views.push_back({name, code, h.sizes().vec(), h.data_ptr(), static_cast<size_t>(h.numel()) * h.element_size()});
  }
  io::write_safetensors(path, views, metadata);
}

std::map<std::string, torch::Tensor> load_tensors(const std::string& path) {
  io::SafetensorsFile file(path);
  std::map<std::string, torch::Tensor> out;
  for (const auto& name : file.names()) {
    const auto& info = file.info(name);
    auto type = type_of(info.dtype);
    check(type.has_value(), "safetensors file '", path, "': tensor '", name, "' has dtype ", info.dtype,
          ", which samba does not load (it loads F32 F64 BF16 F16 I64 I32 I16 I8 U8 BOOL); convert it before loading");
    // memcpy instead of from_blob: the copy owns its memory (the map is closed on return) and
    // files from other writers need not align tensors to their element size.
    auto t = torch::empty(info.shape, torch::TensorOptions().dtype(*type));
    if (info.nbytes > 0) std::memcpy(t.data_ptr(), file.data(name), info.nbytes);
    out.emplace(name, std::move(t));
  }
  return out;
}

NamedTensors module_state(const torch::nn::Module& module) {
  NamedTensors out;
  for (const auto& p : module.named_parameters(true)) out.emplace_back(p.key(), p.value());
  for (const auto& b : module.named_buffers(true)) out.emplace_back(b.key(), b.value());
  return out;
}

void load_state_into(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                     const std::string& origin) {
  std::map<std::string, torch::Tensor> targets;
  for (auto& [name, t] : module_state(module)) targets.emplace(name, t);

  std::vector<std::string> missing, unexpected, mismatched;
  for (const auto& [name, dst] : targets) {
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      missing.push_back(name);
      continue;
    }
    const auto& src = it->second;
    if (src.sizes() != dst.sizes())
      mismatched.push_back(name + " (file " + shape_str(src.sizes()) + ", model " + shape_str(dst.sizes()) + ")");
    else if (src.is_floating_point() != dst.is_floating_point() || (src.scalar_type() == torch::kBool) != (dst.scalar_type() == torch::kBool))
      mismatched.push_back(name + " (file dtype " + std::string(c10::toString(src.scalar_type())) + ", model " +
                           c10::toString(dst.scalar_type()) + ")");
  }
  for (const auto& [name, src] : tensors)
    if (!targets.count(name)) unexpected.push_back(name);

  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::string problems;
    auto add = [&](const char* what, const std::vector<std::string>& names) {
      if (names.empty()) return;
      problems += (problems.empty() ? "" : "; ") + std::to_string(names.size()) + " " + what + ": " + list_some(names);
    };
    add("missing from the file", missing);
    add("unexpected in the file", unexpected);
    add("with mismatched shape or dtype", mismatched);
    fail("cannot load weights from ", origin, ": ", problems,
         ". The weights were saved for a different model; build the model from the model.yaml saved with them");
  }

  torch::NoGradGuard no_grad;
  for (auto& [name, dst] : targets) dst.copy_(tensors.at(name));
}

namespace {

// Puts the fully written (and marked) directory `tmp` under `final_dir`, replacing an older copy
// of the same step so that at every moment one complete copy sits under the final name.
void install(const fs::path& tmp, const fs::path& final_dir, const fs::path& root_dir) {
  std::error_code ec;
  if (!fs::exists(final_dir)) {
    rename_or_fail(tmp, final_dir);
    return;
  }
  // An atomic swap where the filesystem supports it; the old copy ends up under `tmp`.
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_EXCHANGE) == 0) {
    io::fsync_dir(root_dir.string());
    remove_quietly(tmp, "replaced by a new save of the same step");
    return;
  }
  // No swap: move the old copy aside under a temp name (it stays a complete checkpoint that a
  // later prune removes), then move the new one in.
  const fs::path old = fs::path(tmp.string() + kReplacedSuffix);
  io::remove_tree(old.string(), ec);
  rename_or_fail(final_dir, old);
  try {
    rename_or_fail(tmp, final_dir);
  } catch (...) {
    ::rename(old.c_str(), final_dir.c_str());  // put the previous copy back
    throw;
  }
  io::fsync_dir(root_dir.string());
  remove_quietly(old, "replaced by a new save of the same step");
}

nlohmann::ordered_json file_entry(const fs::path& path) {
  return {{"bytes", fs::file_size(path)}, {"crc32c", io::file_crc32c_hex(path.string())}};
}

}  // namespace

std::string save_checkpoint(const std::string& root, int64_t step, const CheckpointContent& content, int keep_last,
                            runtime::Communicator* comm) {
  check(step >= 0, "save_checkpoint: step ", step, " is negative; checkpoint steps count up from 0");
  check(keep_last >= 0, "save_checkpoint: keep_last ", keep_last, " is negative; use 0 to keep every checkpoint");
  const bool distributed = comm != nullptr && comm->distributed();
  const int rank = distributed ? comm->rank() : 0;
  const int world = distributed ? comm->world() : 1;
  const fs::path root_dir(root.empty() ? "." : root);
  const std::string name = step_name(step);
  const fs::path final_dir = root_dir / name;
  std::error_code ec;

  // Rank 0 makes the temporary directory and tells everyone its name (or why it failed).
  std::string status;
  if (rank == 0) {
    const fs::path tmp = root_dir / (kTmpPrefix + name + "-" + std::to_string(::getpid()));
    fs::create_directories(root_dir, ec);
    if (ec || !fs::is_directory(root_dir)) {
      status = "error:cannot create checkpoint directory '" + root_dir.string() + "': " +
               (ec ? ec.message() : std::string("a file is in the way")) + "; check the path and permissions";
    } else {
      io::remove_tree(tmp.string(), ec);  // our own leftover from an earlier failed attempt at this step
      ec.clear();
      if (!fs::create_directory(tmp, ec) || ec)
        status = "error:cannot create '" + tmp.string() + "': " + (ec ? ec.message() : std::string("it exists")) +
                 "; check free space and permissions on the checkpoint directory";
      else
        status = "ok:" + tmp.string();
    }
  }
  if (distributed) status = comm->broadcast_string(status, 0);
  if (status.rfind("error:", 0) == 0) fail(status.substr(6));
  const fs::path tmp = status.substr(3);

  // Every rank writes its own file (and rank 0 the shared ones).
  std::string error;
  try {
    const fs::path mine = tmp / rank_file(rank);
    save_tensors(mine.string(), content.optimizer, {{"format", "pt"}});
    nlohmann::ordered_json entry = {{"file", rank_file(rank)}, {"meta", content.rank_meta}};
    auto fe = file_entry(mine);
    entry["bytes"] = fe["bytes"];
    entry["crc32c"] = fe["crc32c"];
    io::write_file_atomic((tmp / (rank_file(rank) + ".entry.json")).string(), entry.dump() + "\n");
    if (rank == 0) {
      save_tensors((tmp / "model.safetensors").string(), content.model, {{"format", "pt"}});
      io::write_file_atomic((tmp / "trainer.json").string(),
                            content.trainer_state.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
      io::write_file_atomic((tmp / "model.yaml").string(), content.model_config_yaml);
      io::write_file_atomic((tmp / "train.yaml").string(), content.train_config_yaml);
    }
  } catch (const std::exception& e) {
    error = e.what();
  }
  // Agree on success: this is also the barrier after which rank 0 may finish the directory.
  const int64_t failed = distributed ? comm->all_reduce_int(error.empty() ? 0 : 1, runtime::ReduceOp::Max)
                                     : (error.empty() ? 0 : 1);
  if (failed) {
    if (rank == 0) io::remove_tree(tmp.string(), ec);
    fail(error.empty() ? "checkpoint step " + std::to_string(step) +
                             ": another rank could not write its part (its log says why); nothing was saved"
                       : error);
  }

  status = "ok";
  if (rank == 0) {
    try {
      nlohmann::ordered_json manifest = {{"format", "samba-checkpoint"}, {"version", kVersion}, {"step", step},
                                         {"world", world}};
      auto& files = manifest["files"] = nlohmann::ordered_json::object();
      for (const char* part : kSharedFiles) files[part] = file_entry(tmp / part);
      auto& ranks = manifest["ranks"] = nlohmann::ordered_json::array();
      for (int r = 0; r < world; ++r) {
        const fs::path entry_path = tmp / (rank_file(r) + ".entry.json");
        auto entry = nlohmann::ordered_json::parse(io::read_file(entry_path.string()));
        files[rank_file(r)] = {{"bytes", entry["bytes"]}, {"crc32c", entry["crc32c"]}};
        ranks.push_back({{"rank", r}, {"file", rank_file(r)}, {"meta", entry["meta"]}});
        fs::remove(entry_path);
      }
      io::write_file_atomic((tmp / kManifest).string(), manifest.dump(2) + "\n");
      io::write_file_atomic((tmp / kMarker).string(), "step " + std::to_string(step) + "\n");
      io::fsync_dir(tmp.string());
      install(tmp, final_dir, root_dir);
      io::fsync_dir(root_dir.string());
      prune(root_dir, step, keep_last);
    } catch (const std::exception& e) {
      io::remove_tree(tmp.string(), ec);
      status = std::string("error:") + e.what();
    }
  }
  if (distributed) status = comm->broadcast_string(status, 0);
  if (status.rfind("error:", 0) == 0) fail(status.substr(6));
  return final_dir.string();
}

std::string find_latest_checkpoint(const std::string& root, std::vector<std::string>* skipped) {
  for (const auto& d : list_step_dirs(root.empty() ? fs::path(".") : fs::path(root))) {
    if (d.complete) return d.path.string();
    if (skipped) skipped->push_back(d.path.string());
  }
  return "";
}

std::string resolve_checkpoint_dir(const std::string& dir) {
  const fs::path p(dir);
  check(fs::is_directory(p), "'", dir, "' is not a directory; pass a checkpoint directory (.../step_00000120) ",
        "or a run directory that contains step_* checkpoints");
  if (parse_step_name(p.filename().string()) || fs::exists(p / kManifest) || fs::exists(p / kMarker)) return dir;
  std::string latest = find_latest_checkpoint(dir);
  if (latest.empty()) latest = find_latest_checkpoint((p / "checkpoints").string());
  check(!latest.empty(), "no complete checkpoint in '", dir, "' or '", (p / "checkpoints").string(),
        "': expected step_<8 digits> directories with a COMPLETE marker; train first or pass a checkpoint directory");
  return latest;
}

void verify_checkpoint(const std::string& dir) {
  const fs::path root(dir);
  const std::string where = "checkpoint " + dir;
  check(fs::is_directory(root), where, " does not exist or is not a directory; pass a step_* directory");
  check(is_file(root / kMarker), where,
        " is an incomplete checkpoint: it was being written when the run stopped (no COMPLETE marker)", kDamagedFix);
  check(is_file(root / kManifest), where, ": ", kManifest, " is missing", kDamagedFix);

  nlohmann::json manifest;
  try {
    manifest = nlohmann::json::parse(io::read_file((root / kManifest).string()));
  } catch (const nlohmann::json::exception& e) {
    fail(where, ": ", kManifest, " is not valid JSON (", e.what(), ")", kDamagedFix);
  }
  check(manifest.is_object() && manifest.contains("files") && manifest["files"].is_object(), where, ": ",
        kManifest, " has no \"files\" object", kDamagedFix);
  const auto& files = manifest["files"];
  const int version = manifest.value("version", 1);
  check(version == 1 || version == kVersion, where, ": ", kManifest, " has format version ", version,
        ", which this samba does not read (it reads 1 and ", kVersion, "); use a newer samba");
  for (const char* part : kSharedFiles)
    check(files.contains(part), where, ": ", kManifest, " does not list ", part, kDamagedFix);
  if (version == 1) {
    check(files.contains(kV1Optimizer), where, ": ", kManifest, " does not list ", kV1Optimizer, kDamagedFix);
  } else {
    check(manifest.contains("world") && manifest["world"].is_number_integer() && manifest["world"].get<int>() >= 1 &&
              manifest.contains("ranks") && manifest["ranks"].is_array() &&
              manifest["ranks"].size() == manifest["world"].get<size_t>(),
          where, ": ", kManifest, " has no consistent \"world\" / \"ranks\" entries", kDamagedFix);
    for (const auto& r : manifest["ranks"])
      check(r.is_object() && r.contains("file") && r["file"].is_string() && files.contains(r["file"].get<std::string>()),
            where, ": ", kManifest, " names a rank file it does not list", kDamagedFix);
  }

  for (auto it = files.begin(); it != files.end(); ++it) {
    const std::string& file = it.key();
    const auto& entry = it.value();
    check(entry.is_object() && entry.contains("bytes") && entry["bytes"].is_number_unsigned() &&
              entry.contains("crc32c") && entry["crc32c"].is_string(),
          where, ": ", kManifest, " entry for ", file, " lacks bytes/crc32c", kDamagedFix);
    check(file.find('/') == std::string::npos && file != "." && file != "..", where, ": ", kManifest,
          " lists '", file, "', which is not a file name inside the checkpoint", kDamagedFix);
    const fs::path path = root / file;
    check(is_file(path), where, ": ", file, " is missing (the manifest lists it)", kDamagedFix);
    const uint64_t want = entry["bytes"].get<uint64_t>();
    const uint64_t have = fs::file_size(path);
    check(have >= want, where, ": ", file, " is truncated: it has ", have, " bytes but the manifest says ", want,
          kDamagedFix);
    check(have == want, where, ": ", file, " has ", have, " bytes but the manifest says ", want,
          ": it was modified after the checkpoint was written", kDamagedFix);
  }
  // Checksums last: reading gigabytes is pointless when a file is already known missing or short.
  for (auto it = files.begin(); it != files.end(); ++it) {
    const std::string crc = io::file_crc32c_hex((root / it.key()).string());
    const std::string want_crc = it.value()["crc32c"].get<std::string>();
    check(crc == want_crc, where, ": ", it.key(), " has CRC32C ", crc, " but the manifest says ", want_crc,
          ": the file is corrupt", kDamagedFix);
  }
}

Checkpoint load_checkpoint(const std::string& dir) {
  verify_checkpoint(dir);
  const fs::path root(dir);
  Checkpoint c;
  c.dir = dir;
  const auto manifest = nlohmann::json::parse(io::read_file((root / kManifest).string()));
  c.version = manifest.value("version", 1);
  c.model = to_named(load_tensors((root / "model.safetensors").string()));
  const std::string trainer = (root / "trainer.json").string();
  try {
    c.trainer_state = nlohmann::json::parse(io::read_file(trainer));
  } catch (const nlohmann::json::exception& e) {
    fail("checkpoint ", dir, ": trainer.json is not valid JSON (", e.what(), ")", kDamagedFix);
  }
  c.model_config_yaml = io::read_file((root / "model.yaml").string());
  c.train_config_yaml = io::read_file((root / "train.yaml").string());
  if (c.version == 1) {
    c.world = 1;
    c.ranks.push_back({0, (root / kV1Optimizer).string(), nlohmann::json::object()});
  } else {
    c.world = manifest["world"].get<int>();
    for (const auto& r : manifest["ranks"])
      c.ranks.push_back({r.value("rank", static_cast<int>(c.ranks.size())), (root / r["file"].get<std::string>()).string(),
                         r.value("meta", nlohmann::json::object())});
  }
  return c;
}

}  // namespace samba::ckpt
