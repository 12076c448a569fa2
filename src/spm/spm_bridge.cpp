// The samba_spm module: the only code linked to sentencepiece (see include/samba/data/spm_api.h
// for why). Every entry point catches everything, because a C++ exception unwinding into a
// caller that loaded us with dlopen is undefined behaviour waiting to happen.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <string>
#include <unordered_map>
#include <vector>

#include "samba/data/spm_api.h"

struct samba_spm_model {
  sentencepiece::SentencePieceProcessor processor;
};

namespace {

void put_error(char* err, size_t cap, const std::string& message) {
  if (err == nullptr || cap == 0) return;
  size_t n = std::min(message.size(), cap - 1);
  std::memcpy(err, message.data(), n);
  err[n] = '\0';
}

// Runs `body`, turning exceptions and non-OK statuses into the C error convention.
template <typename Body>
int guarded(char* err, size_t cap, Body&& body) {
  try {
    sentencepiece::util::Status status = body();
    if (status.ok()) return 0;
    put_error(err, cap, status.ToString());
    return 1;
  } catch (const std::exception& e) {
    put_error(err, cap, e.what());
  } catch (...) {
    put_error(err, cap, "unknown C++ exception inside sentencepiece");
  }
  return 1;
}

int bridge_train(const samba_spm_train_options* o, char* err, size_t cap) {
  return guarded(err, cap, [&] {
    // Llama-style BPE: identity normalisation and no whitespace collapsing so that
    // decode(encode(text)) == text; byte fallback so no text ever maps to <unk>.
    std::unordered_map<std::string, std::string> kw = {
        {"input", o->input},
        {"model_prefix", o->model_prefix},
        {"model_type", "bpe"},
        {"vocab_size", std::to_string(o->vocab_size)},
        {"character_coverage", std::to_string(o->character_coverage)},
        {"input_sentence_size", std::to_string(o->input_sentence_size)},
        {"shuffle_input_sentence", "true"},
        {"num_threads", std::to_string(std::max(1, o->num_threads))},
        {"byte_fallback", o->byte_fallback ? "true" : "false"},
        {"normalization_rule_name", "identity"},
        {"remove_extra_whitespaces", "false"},
        {"split_digits", "true"},
        {"allow_whitespace_only_pieces", "true"},
        {"max_sentence_length", "65536"},
        {"unk_id", "0"},
        {"bos_id", "1"},
        {"eos_id", "2"},
        {"pad_id", "-1"},
    };
    // Sentencepiece's warnings and errors go to std::cerr, and under RTLD_DEEPBIND (how the
    // module is loaded, spm_api.h) the library's std::cerr is not the initialized one, so the
    // first warning segfaults -- e.g. "No valid symbol found" when the vocabulary is larger
    // than the text supports. Failures still come back as a Status, so only fatal messages
    // are let through.
    kw["minloglevel"] = "3";  // also when not quiet: verbose output would crash the same way
    sentencepiece::SetRandomGeneratorSeed(o->seed);
    return sentencepiece::SentencePieceTrainer::Train(kw);
  });
}

samba_spm_model* bridge_load(const char* path, char* err, size_t cap) {
  auto* model = new (std::nothrow) samba_spm_model();
  if (model == nullptr) {
    put_error(err, cap, "out of memory");
    return nullptr;
  }
  int rc = guarded(err, cap, [&] { return model->processor.Load(path); });
  if (rc != 0) {
    delete model;
    return nullptr;
  }
  return model;
}

void bridge_free(samba_spm_model* model) { delete model; }

int bridge_encode(const samba_spm_model* m, const char* text, size_t len, samba_spm_ids_sink sink,
                  void* ctx, char* err, size_t cap) {
  return guarded(err, cap, [&] {
    std::vector<int> ids;
    auto status = m->processor.Encode(std::string(text, len), &ids);
    if (status.ok()) {
      static_assert(sizeof(int) == sizeof(int32_t), "token ids cross the boundary as int32");
      sink(ctx, reinterpret_cast<const int32_t*>(ids.data()), ids.size());
    }
    return status;
  });
}

int bridge_decode(const samba_spm_model* m, const int32_t* ids, size_t n, samba_spm_text_sink sink,
                  void* ctx, char* err, size_t cap) {
  return guarded(err, cap, [&] {
    const int32_t size = m->processor.GetPieceSize();
    std::vector<int> v(ids, ids + n);
    for (int id : v) {
      // sentencepiece aborts the process on an out-of-range id; report it instead.
      if (id < 0 || id >= size) {
        return sentencepiece::util::Status(sentencepiece::util::StatusCode::kOutOfRange,
                                           "token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                                               std::to_string(size) + ")");
      }
    }
    std::string out;
    auto status = m->processor.Decode(v, &out);
    if (status.ok()) sink(ctx, out.data(), out.size());
    return status;
  });
}

int32_t bridge_vocab_size(const samba_spm_model* m) { return m->processor.GetPieceSize(); }

int32_t bridge_special_id(const samba_spm_model* m, int32_t which) {
  switch (which) {
    case 0: return m->processor.unk_id();
    case 1: return m->processor.bos_id();
    case 2: return m->processor.eos_id();
    case 3: return m->processor.pad_id();
    default: return -1;
  }
}

int bridge_piece(const samba_spm_model* m, int32_t id, samba_spm_text_sink sink, void* ctx, char* err,
                 size_t cap) {
  return guarded(err, cap, [&] {
    if (id < 0 || id >= m->processor.GetPieceSize()) {
      return sentencepiece::util::Status(sentencepiece::util::StatusCode::kOutOfRange,
                                         "token id " + std::to_string(id) + " is outside the vocabulary");
    }
    const std::string& piece = m->processor.IdToPiece(id);
    sink(ctx, piece.data(), piece.size());
    return sentencepiece::util::Status();
  });
}

const samba_spm_api kApi = {
    SAMBA_SPM_ABI_VERSION, bridge_train,      bridge_load,       bridge_free, bridge_encode,
    bridge_decode,         bridge_vocab_size, bridge_special_id, bridge_piece,
};

}  // namespace

extern "C" __attribute__((visibility("default"))) const samba_spm_api* samba_spm_get_api(void) {
  return &kApi;
}
