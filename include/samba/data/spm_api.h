#pragma once
// The C interface between libsamba and the samba_spm module (src/spm/spm_bridge.cpp).
//
// Why a module at all: Debian's libsentencepiece exports its own protobuf internals, which
// interpose the libprotobuf that libtorch_cpu loads, and a program linked to both crashes
// before main. The module is the only thing linked to sentencepiece; libsamba loads it with
// dlopen(RTLD_LOCAL | RTLD_DEEPBIND) so its protobuf stays private.
//
// Rules of the boundary: plain C types only, no C++ exceptions cross it (every failure comes
// back as a message written into the caller's buffer), and variable-sized results are pushed
// through caller-supplied sinks so neither side frees the other's memory.
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Bumped whenever a struct below or a function signature changes; the loader refuses a
// module built from another version instead of calling through a mismatched table.
#define SAMBA_SPM_ABI_VERSION 1

typedef struct samba_spm_model samba_spm_model;  // opaque SentencePieceProcessor

typedef struct samba_spm_train_options {
  const char* input;            // text file, one training sentence per line
  const char* model_prefix;     // writes <prefix>.model and <prefix>.vocab
  int32_t vocab_size;
  double character_coverage;    // e.g. 0.9995 for English, 1.0 for small alphabets
  int64_t input_sentence_size;  // lines sampled for training; 0 = all
  uint32_t seed;                // seeds the sentence sampling
  int32_t num_threads;
  int32_t byte_fallback;        // 1: unknown characters become <0xNN> byte pieces
  int32_t quiet;                // 1: suppress sentencepiece's per-step training log
} samba_spm_train_options;

// Receivers for variable-length outputs; `ctx` is passed back untouched.
typedef void (*samba_spm_ids_sink)(void* ctx, const int32_t* ids, size_t n);
typedef void (*samba_spm_text_sink)(void* ctx, const char* text, size_t n);

// All int-returning functions return 0 on success, nonzero on failure with a NUL-terminated
// message in err[0..err_cap).
typedef int (*samba_spm_train_fn)(const samba_spm_train_options* opts, char* err, size_t err_cap);
typedef samba_spm_model* (*samba_spm_load_fn)(const char* model_path, char* err, size_t err_cap);
typedef void (*samba_spm_free_fn)(samba_spm_model* model);
typedef int (*samba_spm_encode_fn)(const samba_spm_model* model, const char* text, size_t len,
                                   samba_spm_ids_sink sink, void* ctx, char* err, size_t err_cap);
typedef int (*samba_spm_decode_fn)(const samba_spm_model* model, const int32_t* ids, size_t n,
                                   samba_spm_text_sink sink, void* ctx, char* err, size_t err_cap);
typedef int32_t (*samba_spm_vocab_size_fn)(const samba_spm_model* model);
// Which special id: 0 unk, 1 bos, 2 eos, 3 pad. -1 when the model has none.
typedef int32_t (*samba_spm_special_id_fn)(const samba_spm_model* model, int32_t which);
typedef int (*samba_spm_piece_fn)(const samba_spm_model* model, int32_t id, samba_spm_text_sink sink,
                                  void* ctx, char* err, size_t err_cap);

typedef struct samba_spm_api {
  int32_t abi_version;  // SAMBA_SPM_ABI_VERSION of the module
  samba_spm_train_fn train;
  samba_spm_load_fn load;
  samba_spm_free_fn free_model;
  samba_spm_encode_fn encode;
  samba_spm_decode_fn decode;
  samba_spm_vocab_size_fn vocab_size;
  samba_spm_special_id_fn special_id;
  samba_spm_piece_fn piece;
} samba_spm_api;

// The module's single exported symbol; everything else is reached through the table.
#define SAMBA_SPM_ENTRY_SYMBOL "samba_spm_get_api"
typedef const samba_spm_api* (*samba_spm_get_api_fn)(void);

#ifdef __cplusplus
}  // extern "C"
#endif
