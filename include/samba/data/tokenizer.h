#pragma once
// SentencePiece BPE tokenizer, reached through the dlopen'd samba_spm module so that
// torch-linked programs can use it (see spm_api.h for the crash this avoids).
//
// The module is looked up once per process, in this order:
//   1. $SAMBA_SPM_MODULE (a path to libsamba_spm.so)
//   2. libsamba_spm.so next to the running executable (/proc/self/exe)
//   3. the build tree's copy (compiled in as SAMBA_SPM_MODULE_PATH)
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct samba_spm_model;

namespace samba::data {

class Tokenizer {
 public:
  Tokenizer() = default;
  // Throws samba::Error naming the file when it is missing or not a SentencePiece model.
  static Tokenizer load(const std::string& model_path);

  bool loaded() const { return model_ != nullptr; }
  std::vector<int32_t> encode(const std::string& text) const;
  std::string decode(const std::vector<int32_t>& ids) const;
  std::string piece(int32_t id) const;

  int32_t vocab_size() const { return vocab_size_; }
  int32_t bos_id() const { return bos_id_; }  // -1 when the model has none
  int32_t eos_id() const { return eos_id_; }
  int32_t unk_id() const { return unk_id_; }
  int32_t pad_id() const { return pad_id_; }
  const std::string& path() const { return path_; }

 private:
  std::shared_ptr<samba_spm_model> model_;
  std::string path_;
  int32_t vocab_size_ = 0, bos_id_ = -1, eos_id_ = -1, unk_id_ = -1, pad_id_ = -1;
};

struct TrainTokenizerOptions {
  std::string input;         // text file, one sentence/paragraph per line
  std::string model_prefix;  // writes <prefix>.model and <prefix>.vocab
  int32_t vocab_size = 4096;
  double character_coverage = 0.9995;
  int64_t input_sentence_size = 2'000'000;  // lines sampled; 0 = all
  uint32_t seed = 1234;
  int32_t num_threads = 0;  // 0 = hardware concurrency
  bool byte_fallback = true;
  bool quiet = true;
};

// Trains a BPE model (unk=0, bos=1, eos=2, no pad; identity normalisation, so decoding
// reproduces the input text exactly). Returns the path of the written .model file.
std::string train_tokenizer(const TrainTokenizerOptions& options);

// Where the bridge module was loaded from (loads it if needed); for diagnostics.
std::string spm_module_path();

}  // namespace samba::data
