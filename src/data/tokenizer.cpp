#include "samba/data/tokenizer.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>

#include "samba/core/error.h"
#include "samba/data/spm_api.h"

namespace samba::data {
namespace fs = std::filesystem;

namespace {

#ifndef SAMBA_SPM_MODULE_PATH
#define SAMBA_SPM_MODULE_PATH ""
#endif

constexpr const char* kModuleName = "libsamba_spm.so";

struct LoadedModule {
  const samba_spm_api* api = nullptr;
  std::string path;
  std::string failure;  // every attempt and why it failed, when api == nullptr
};

std::string executable_dir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : exe.parent_path().string();
}

// Returns the api table or appends the reason to `why`.
const samba_spm_api* try_open(const std::string& path, std::string& why) {
  // RTLD_DEEPBIND keeps the module's sentencepiece/protobuf symbols bound inside it even when
  // libtorch has already loaded another protobuf into the process; RTLD_LOCAL keeps them
  // from leaking out to later libraries.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
  if (handle == nullptr) {
    const char* e = dlerror();
    why += "\n  " + path + ": " + (e ? e : "dlopen failed");
    return nullptr;
  }
  auto get = reinterpret_cast<samba_spm_get_api_fn>(dlsym(handle, SAMBA_SPM_ENTRY_SYMBOL));
  if (get == nullptr) {
    why += "\n  " + path + ": no symbol " + SAMBA_SPM_ENTRY_SYMBOL + " (not a samba_spm module)";
    dlclose(handle);
    return nullptr;
  }
  const samba_spm_api* api = get();
  if (api == nullptr || api->abi_version != SAMBA_SPM_ABI_VERSION) {
    why += "\n  " + path + ": ABI version " + std::to_string(api ? api->abi_version : -1) + ", expected " +
           std::to_string(SAMBA_SPM_ABI_VERSION) + " (stale build: rebuild the samba_spm target)";
    dlclose(handle);
    return nullptr;
  }
  // Never dlclose a loaded module: models created through it may outlive any owner we pick.
  return api;
}

LoadedModule open_module() {
  LoadedModule m;
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("SAMBA_SPM_MODULE"); env != nullptr && *env) {
    candidates.emplace_back(env);
  }
  if (std::string dir = executable_dir(); !dir.empty()) {
    candidates.push_back((fs::path(dir) / kModuleName).string());
  }
  if (*SAMBA_SPM_MODULE_PATH) candidates.emplace_back(SAMBA_SPM_MODULE_PATH);
  for (const auto& path : candidates) {
    std::error_code ec;
    if (!fs::exists(path, ec)) {
      m.failure += "\n  " + path + ": no such file";
      continue;
    }
    if (const samba_spm_api* api = try_open(path, m.failure)) {
      m.api = api;
      m.path = path;
      return m;
    }
  }
  return m;
}

const LoadedModule& loaded_module() {
  static const LoadedModule module = open_module();
  return module;
}

const samba_spm_api& api() {
  const LoadedModule& module = loaded_module();
  if (module.api == nullptr) {
    fail("cannot load the SentencePiece bridge module ", kModuleName, ". Tried:", module.failure,
         "\nFix: build the samba_spm target (ninja samba_spm), copy ", kModuleName,
         " next to the samba executable, or set SAMBA_SPM_MODULE=/path/to/", kModuleName);
  }
  return *module.api;
}

constexpr size_t kErrCap = 2048;

void append_ids(void* ctx, const int32_t* ids, size_t n) {
  auto* out = static_cast<std::vector<int32_t>*>(ctx);
  out->insert(out->end(), ids, ids + n);
}

void append_text(void* ctx, const char* text, size_t n) { static_cast<std::string*>(ctx)->append(text, n); }

}  // namespace

std::string spm_module_path() {
  api();
  return loaded_module().path;
}

Tokenizer Tokenizer::load(const std::string& model_path) {
  std::error_code ec;
  check(fs::is_regular_file(model_path, ec), "tokenizer model '", model_path,
        "' does not exist. Fix: pass the tokenizer.model written by `samba data` (it sits in the dataset "
        "directory) or an existing SentencePiece model such as Llama-2's tokenizer.model");
  const samba_spm_api& a = api();
  char err[kErrCap] = {0};
  samba_spm_model* raw = a.load(model_path.c_str(), err, kErrCap);
  check(raw != nullptr, "cannot load tokenizer model '", model_path, "': ", err,
        ". Fix: the file must be a SentencePiece .model (protobuf), not the .vocab text file or a "
        "HuggingFace tokenizer.json");
  Tokenizer t;
  auto free_model = a.free_model;
  t.model_ = std::shared_ptr<samba_spm_model>(raw, [free_model](samba_spm_model* m) { free_model(m); });
  t.path_ = model_path;
  t.vocab_size_ = a.vocab_size(raw);
  t.unk_id_ = a.special_id(raw, 0);
  t.bos_id_ = a.special_id(raw, 1);
  t.eos_id_ = a.special_id(raw, 2);
  t.pad_id_ = a.special_id(raw, 3);
  check(t.vocab_size_ > 0, "tokenizer model '", model_path, "' has an empty vocabulary");
  check(t.eos_id_ >= 0, "tokenizer model '", model_path,
        "' defines no end-of-sentence piece; samba separates documents with EOS. Fix: train the "
        "tokenizer with `samba data` or with sentencepiece's --eos_id set");
  return t;
}

std::vector<int32_t> Tokenizer::encode(const std::string& text) const {
  check(loaded(), "Tokenizer::encode called on a tokenizer that was never loaded");
  std::vector<int32_t> ids;
  char err[kErrCap] = {0};
  int rc = api().encode(model_.get(), text.data(), text.size(), append_ids, &ids, err, kErrCap);
  check(rc == 0, "tokenizer '", path_, "' failed to encode text: ", err);
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  check(loaded(), "Tokenizer::decode called on a tokenizer that was never loaded");
  std::string text;
  char err[kErrCap] = {0};
  int rc = api().decode(model_.get(), ids.data(), ids.size(), append_text, &text, err, kErrCap);
  check(rc == 0, "tokenizer '", path_, "' failed to decode: ", err);
  return text;
}

std::string Tokenizer::piece(int32_t id) const {
  check(loaded(), "Tokenizer::piece called on a tokenizer that was never loaded");
  std::string text;
  char err[kErrCap] = {0};
  int rc = api().piece(model_.get(), id, append_text, &text, err, kErrCap);
  check(rc == 0, "tokenizer '", path_, "': ", err);
  return text;
}

std::string train_tokenizer(const TrainTokenizerOptions& o) {
  std::error_code ec;
  check(fs::is_regular_file(o.input, ec), "tokenizer training input '", o.input, "' does not exist");
  check(!o.model_prefix.empty(), "train_tokenizer: model_prefix is empty");
  // 256 byte pieces + unk/bos/eos must fit with room left for merges.
  const int32_t floor = o.byte_fallback ? 256 + 3 + 1 : 3 + 1;
  check(o.vocab_size >= floor, "tokenizer vocab size ", o.vocab_size, " is too small: byte fallback needs at least ",
        floor, ". Fix: pass --vocab-size ", floor, " or more (4096 is the tiny default, 32000 Llama-2's)");
  check(o.character_coverage > 0.0 && o.character_coverage <= 1.0, "character coverage ", o.character_coverage,
        " must be in (0, 1]");
  fs::path parent = fs::path(o.model_prefix).parent_path();
  if (!parent.empty()) fs::create_directories(parent);

  samba_spm_train_options c{};
  c.input = o.input.c_str();
  c.model_prefix = o.model_prefix.c_str();
  c.vocab_size = o.vocab_size;
  c.character_coverage = o.character_coverage;
  c.input_sentence_size = o.input_sentence_size;
  c.seed = o.seed;
  c.num_threads = o.num_threads > 0 ? o.num_threads : static_cast<int32_t>(std::max(1u, std::thread::hardware_concurrency()));
  c.byte_fallback = o.byte_fallback ? 1 : 0;
  c.quiet = o.quiet ? 1 : 0;
  char err[kErrCap] = {0};
  int rc = api().train(&c, err, kErrCap);
  check(rc == 0, "tokenizer training on '", o.input, "' failed: ", err,
        ". Fix: a vocabulary larger than the text supports fails; use a smaller --vocab-size or more text");
  std::string model = o.model_prefix + ".model";
  check(fs::is_regular_file(model, ec), "tokenizer training reported success but wrote no '", model, "'");
  return model;
}

}  // namespace samba::data
