#include "samba/eval/passkey.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "samba/core/error.h"
#include "samba/core/progress.h"
#include "samba/data/loader.h"

namespace samba {

namespace {

// The wording of the passkey test as it is usually run (Mohtashami & Jaggi 2023): an
// instruction, a repeated filler paragraph, the needle, and the question.
const char* const kIntro =
    "There is an important piece of information hidden inside a lot of irrelevant text. Find it and memorize it. "
    "I will quiz you about the important information there.";
const char* const kFiller = " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
const char* const kQuestion = " What is the pass key? The pass key is";

void append(std::vector<int32_t>& out, const std::vector<int32_t>& piece) {
  out.insert(out.end(), piece.begin(), piece.end());
}

}  // namespace

PasskeyGenerator::PasskeyGenerator(Encoder encode, int32_t start, uint64_t seed)
    : encode_(std::move(encode)), start_(start), rng_(seed) {
  intro_ = encode_(kIntro);
  filler_ = encode_(kFiller);
  question_ = encode_(kQuestion);
  check(!filler_.empty() && !question_.empty(), "passkey: the tokenizer encoded the filler text to nothing");
}

int64_t PasskeyGenerator::min_length() const {
  // Start + intro + needle + question + answer with one filler sentence: a 5-digit key takes
  // at most 6 tokens per occurrence with any tokenizer that has digits and a space.
  const auto needle = encode_(" The pass key is 99999. Remember it. 99999 is the pass key.");
  return (start_ >= 0 ? 1 : 0) + static_cast<int64_t>(intro_.size() + needle.size() + question_.size()) + 6 +
         static_cast<int64_t>(filler_.size());
}

PasskeyGenerator::Sample PasskeyGenerator::make(int64_t length, double depth, const std::string& key_in) {
  check(depth >= 0.0 && depth <= 1.0, "passkey depth must be in [0, 1], got ", depth);
  Sample s;
  s.key = key_in.empty() ? std::to_string(10000 + data::bounded_draw(rng_, 90000)) : key_in;
  const auto key = encode_(" " + s.key);
  std::vector<int32_t> needle = encode_(" The pass key is");
  append(needle, key);
  append(needle, encode_(". Remember it."));
  const int64_t repeat_offset = static_cast<int64_t>(needle.size());
  append(needle, key);
  append(needle, encode_(" is the pass key."));

  const int64_t fixed = (start_ >= 0 ? 1 : 0) + static_cast<int64_t>(intro_.size() + needle.size() + question_.size() +
                                                                     key.size());
  const int64_t filler_total = length - fixed;
  check(filler_total >= 0, "passkey: a document of ", length, " tokens cannot hold the prompt (", fixed,
        " tokens without filler); use lengths of at least ", min_length());
  // The needle goes on a filler sentence boundary at the requested depth.
  const auto unit = static_cast<int64_t>(filler_.size());
  const int64_t units_before = std::min(static_cast<int64_t>(std::llround(depth * static_cast<double>(filler_total) / unit)),
                                        filler_total / unit);
  const int64_t before = units_before * unit, after = filler_total - before;
  auto filler = [&](int64_t n) {
    for (int64_t i = 0; i < n; ++i) s.tokens.push_back(filler_[static_cast<size_t>(i % unit)]);
  };

  s.tokens.reserve(static_cast<size_t>(length));
  if (start_ >= 0) s.tokens.push_back(start_);
  append(s.tokens, intro_);
  filler(before);
  s.needle_begin = static_cast<int64_t>(s.tokens.size());
  s.repeat_begin = s.needle_begin + repeat_offset;
  append(s.tokens, needle);
  filler(after);
  append(s.tokens, question_);
  s.answer_begin = static_cast<int64_t>(s.tokens.size());
  s.answer_len = static_cast<int64_t>(key.size());
  append(s.tokens, key);
  check(static_cast<int64_t>(s.tokens.size()) == length, "passkey: internal length mismatch");
  return s;
}

namespace {

// Inputs (B, L-1) and targets (B, L-1) of a batch; targets are -1 except where `keep` says.
struct Batch {
  torch::Tensor inputs, targets;
};

Batch to_batch(const std::vector<PasskeyGenerator::Sample>& samples, bool with_repeat, const torch::Device& device) {
  const auto n = static_cast<int64_t>(samples.size());
  const auto len = static_cast<int64_t>(samples.front().tokens.size());
  auto tokens = torch::empty({n, len}, torch::kLong);
  auto targets = torch::full({n, len - 1}, -1, torch::kLong);
  auto ta = tokens.accessor<int64_t, 2>();
  auto ga = targets.accessor<int64_t, 2>();
  for (int64_t b = 0; b < n; ++b) {
    const auto& s = samples[static_cast<size_t>(b)];
    for (int64_t i = 0; i < len; ++i) ta[b][i] = s.tokens[static_cast<size_t>(i)];
    // Position p predicts token p + 1.
    for (int64_t i = 0; i < s.answer_len; ++i) {
      ga[b][s.answer_begin + i - 1] = s.tokens[static_cast<size_t>(s.answer_begin + i)];
      if (with_repeat) ga[b][s.repeat_begin + i - 1] = s.tokens[static_cast<size_t>(s.repeat_begin + i)];
    }
  }
  return {tokens.slice(1, 0, len - 1).to(device), targets.to(device)};
}

}  // namespace

std::vector<double> finetune_passkey(LanguageModel& model, PasskeyGenerator& gen, const PasskeyFinetuneOptions& o) {
  check(o.steps >= 0 && o.batch > 0 && o.lr > 0, "passkey fine-tune: steps >= 0, batch > 0 and lr > 0 are required");
  const int64_t length = o.length > 0 ? o.length : model->config().seq_len;
  const auto device = model->embed->weight.device();
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(o.lr).betas({0.9, 0.95}).weight_decay(0.0));
  model->train();
  std::vector<double> losses;
  std::unique_ptr<Progress> progress;
  if (o.progress) progress = std::make_unique<Progress>("passkey fine-tune", static_cast<uint64_t>(o.steps), ProgressOptions{"steps"});
  std::uniform_real_distribution<double> depth(0.0, 1.0);
  std::mt19937_64 depth_rng(0x9e3779b97f4a7c15ULL);
  const int64_t warmup = std::max<int64_t>(1, o.steps / 10);
  for (int64_t step = 0; step < o.steps; ++step) {
    std::vector<PasskeyGenerator::Sample> samples;
    for (int64_t b = 0; b < o.batch; ++b) samples.push_back(gen.make(length, depth(depth_rng)));
    Batch batch = to_batch(samples, /*with_repeat=*/true, device);
    for (auto& group : opt.param_groups())
      static_cast<torch::optim::AdamWOptions&>(group.options()).lr(o.lr * std::min(1.0, double(step + 1) / warmup));
    opt.zero_grad();
    auto loss = model->loss(batch.inputs, batch.targets);
    loss.backward();
    torch::nn::utils::clip_grad_norm_(model->parameters(), 1.0);
    opt.step();
    losses.push_back(loss.item<double>());
    if (progress) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "loss %.3f", losses.back());
      progress->set_postfix(buf);
      progress->update(static_cast<uint64_t>(step + 1));
    }
  }
  if (progress) progress->finish();
  model->eval();
  return losses;
}

double PasskeyGrid::mean() const {
  double sum = 0;
  size_t n = 0;
  for (const auto& row : accuracy)
    for (double v : row) sum += v, ++n;
  return n ? sum / static_cast<double>(n) : 0.0;
}

std::vector<double> even_depths(int64_t n) {
  check(n >= 1, "passkey: at least one depth is needed");
  std::vector<double> d;
  for (int64_t i = 0; i < n; ++i) d.push_back(n == 1 ? 0.5 : static_cast<double>(i) / static_cast<double>(n - 1));
  return d;
}

PasskeyGrid evaluate_passkey(LanguageModel& model, PasskeyGenerator& gen, const std::vector<int64_t>& lengths,
                             const std::vector<double>& depths, int64_t trials, bool progress_on) {
  check(trials > 0, "passkey: trials must be positive");
  PasskeyGrid g;
  g.lengths = lengths;
  g.depths = depths;
  g.trials = trials;
  g.accuracy.assign(depths.size(), std::vector<double>(lengths.size(), 0.0));
  const auto device = model->embed->weight.device();
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  std::unique_ptr<Progress> progress;
  if (progress_on)
    progress = std::make_unique<Progress>("passkey", static_cast<uint64_t>(lengths.size() * depths.size()),
                                          ProgressOptions{"cells"});
  for (size_t li = 0; li < lengths.size(); ++li) {
    // About 8k tokens per forward.
    const int64_t per_batch = std::max<int64_t>(1, 8192 / lengths[li]);
    for (size_t di = 0; di < depths.size(); ++di) {
      int64_t correct = 0;
      for (int64_t done = 0; done < trials;) {
        const int64_t n = std::min(per_batch, trials - done);
        std::vector<PasskeyGenerator::Sample> samples;
        for (int64_t i = 0; i < n; ++i) samples.push_back(gen.make(lengths[li], depths[di]));
        Batch batch = to_batch(samples, /*with_repeat=*/false, device);
        auto pred = model->forward(batch.inputs).argmax(-1);
        auto scored = batch.targets.ge(0);
        // A document is right when every answer position is.
        auto wrong = (pred.ne(batch.targets) & scored).sum(1);
        correct += wrong.eq(0).sum().item<int64_t>();
        done += n;
      }
      g.accuracy[di][li] = static_cast<double>(correct) / static_cast<double>(trials);
      if (progress) progress->advance();
    }
  }
  if (progress) progress->finish();
  if (was_training) model->train();
  return g;
}

}  // namespace samba
