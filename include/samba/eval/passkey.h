#pragma once
// Passkey retrieval (spec section 6): a random 5-digit key hidden at a chosen depth in
// repetitive filler text; the model is asked for it at the end. Accuracy is exact match of
// the greedy answer, computed with teacher forcing (every answer token must be the argmax
// given the prompt and the answer tokens before it), which equals greedy decoding of the
// answer. The fine-tune trains on such documents with the loss on the key's repetition in the
// needle and on the answer only: the filler is predictable and the first key is random, so
// the rest of the loss would teach nothing about retrieval.
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "samba/model/model.h"

namespace samba {

class PasskeyGenerator {
 public:
  using Encoder = std::function<std::vector<int32_t>(const std::string&)>;
  // `start` is put first (the training stream's document separator, EOS); -1 = nothing.
  PasskeyGenerator(Encoder encode, int32_t start, uint64_t seed);

  struct Sample {
    std::vector<int32_t> tokens;  // exactly `length` tokens, ending with the answer
    int64_t answer_begin = 0;     // index of the first answer token
    int64_t answer_len = 0;
    int64_t repeat_begin = 0;     // the key's second occurrence inside the needle
    int64_t needle_begin = 0;
    std::string key;
  };

  // A document of exactly `length` tokens with the needle at relative depth `depth` (0 = right
  // after the introduction, 1 = just before the question), placed on a filler sentence
  // boundary. A new random key unless `key` is given. Throws when `length` < min_length().
  Sample make(int64_t length, double depth, const std::string& key = "");
  int64_t min_length() const;

 private:
  Encoder encode_;
  int32_t start_;
  std::mt19937_64 rng_;
  std::vector<int32_t> intro_, filler_, question_;
};

struct PasskeyFinetuneOptions {
  int64_t steps = 100;
  int64_t length = 0;  // tokens per document (0: the model's seq_len)
  int64_t batch = 8;
  double lr = 1e-3;
  bool progress = true;
};

// Fine-tunes `model` in place with AdamW (constant lr after a 10% warmup, clip 1.0); depths
// uniform in [0, 1]. Returns the loss of each step.
std::vector<double> finetune_passkey(LanguageModel& model, PasskeyGenerator& gen, const PasskeyFinetuneOptions& o);

struct PasskeyGrid {
  std::vector<int64_t> lengths;
  std::vector<double> depths;
  std::vector<std::vector<double>> accuracy;  // [depth][length], fraction of trials correct
  int64_t trials = 0;
  double mean() const;
};

// `trials` documents per (length, depth) cell.
PasskeyGrid evaluate_passkey(LanguageModel& model, PasskeyGenerator& gen, const std::vector<int64_t>& lengths,
                             const std::vector<double>& depths, int64_t trials, bool progress = false);

// depths 0, 1/(n-1), ..., 1 (the paper uses 11).
std::vector<double> even_depths(int64_t n);

}  // namespace samba
