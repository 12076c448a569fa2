#pragma once
// Corpus -> tokenizer + train/val token shards + dataset.json (`samba data`).
//
// Inputs: files or directories (searched recursively, in sorted order).
//   *.txt            one document per file (paragraphs inside may be separated by blank lines)
//   *.jsonl / *.json one document per line, taken from the "text" field
// Output directory (docs/FORMATS.md, "Dataset directory"):
//   tokenizer.model, tokenizer.vocab   trained here unless an existing model was given
//   train_000.bin ...                  token shards of the training split
//   val_000.bin                        token shards of the validation split
//   dataset.json                       the manifest, written last: its presence means complete
#include <cstdint>
#include <string>
#include <vector>

namespace samba::data {

struct PrepareOptions {
  std::vector<std::string> inputs;
  std::string out_dir;
  int32_t vocab_size = 4096;           // for a tokenizer trained here
  std::string tokenizer;               // existing SentencePiece model: skip training
  double val_fraction = 0.02;          // of documents, chosen by a seeded draw
  int64_t min_val_docs = 3;            // the split holds at least this many (one train doc kept)
  uint64_t seed = 1234;
  int64_t max_docs = 0;                // 0 = all; otherwise the first max_docs in input order
  double character_coverage = 0.9995;
  int64_t tokenizer_sentences = 2'000'000;  // lines sampled for tokenizer training
  uint64_t shard_tokens = 256ull << 20;     // a new train shard starts past this many tokens
  int num_threads = 0;                 // encoding threads; 0 = hardware concurrency
  bool progress = true;
};

struct ShardInfo {
  std::string file;  // relative to the dataset directory
  uint64_t tokens = 0;
  uint64_t documents = 0;
  uint32_t crc32c = 0;  // of the token payload, as in the shard header
  uint64_t bytes = 0;   // file size; 0 = not recorded (version-1 manifest)
};

// Size and CRC32C of a whole file the manifest names (tokenizer.model, tokenizer.vocab).
struct FileChecksum {
  std::string file;  // relative to the dataset directory
  uint64_t bytes = 0;
  uint32_t crc32c = 0;
};

struct DatasetManifest {
  std::string dir;        // where dataset.json was found
  std::string tokenizer;  // absolute path of the tokenizer model
  int32_t vocab_size = 0;
  int32_t eos_id = -1;
  int32_t bos_id = -1;
  std::vector<ShardInfo> train, val;
  std::vector<FileChecksum> files;  // empty for a version-1 manifest (loaded with a warning)
  uint64_t train_tokens = 0, val_tokens = 0, train_docs = 0, val_docs = 0;
  // exp of the mean negative log-likelihood of the validation tokens under an add-one
  // smoothed unigram model fitted on the training tokens: the perplexity a model must beat
  // to have learned anything beyond token frequencies.
  double unigram_val_ppl = 0.0;

  std::vector<std::string> train_paths() const;
  std::vector<std::string> val_paths() const;
};

DatasetManifest prepare_dataset(const PrepareOptions& options);

// `path` is a dataset directory or its dataset.json. Verifies what train and eval are about to
// use: the size and CRC32C of the tokenizer files, every shard's size and header against the
// manifest, and the validation shards' payload CRCs (up front, not at the first evaluation;
// training shards' payloads are checked when the loader opens them). A version-1 manifest
// (no checksums) loads with a warning.
//
// `samba data` (prepare_dataset) locks the output directory, removes what an interrupted
// earlier run left there (*.bin.tmp shards, tokenizer_train.txt) and, on failure (a full
// disk), its own temporaries.
DatasetManifest load_dataset_manifest(const std::string& path);

// The unigram baseline on its own, from token counts (vocab-sized vectors); exposed for tests.
double unigram_perplexity(const std::vector<uint64_t>& train_counts, const std::vector<uint64_t>& val_counts);

}  // namespace samba::data
