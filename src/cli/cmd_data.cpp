#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>

#include "samba/cli/commands.h"
#include "samba/cli/flags.h"
#include "samba/core/progress.h"
#include "samba/data/prepare.h"

namespace samba::cli {

void add_data_command(CLI::App& app) {
  auto opts = std::make_shared<data::PrepareOptions>();
  opts->out_dir = "data/cache/brown";
  auto* cmd = app.add_subcommand(
      "data", "train a BPE tokenizer and turn a corpus into train/val token shards + dataset.json");
  cmd->add_option("-i,--input", opts->inputs,
                  "corpus files or directories (repeatable): .txt = one document per file, "
                  ".jsonl = one {\"text\": ...} document per line")
      ->required();
  cmd->add_option("-o,--out", opts->out_dir, "output dataset directory")->capture_default_str();
  cmd->add_option("--vocab-size", opts->vocab_size, "BPE vocabulary size when training a tokenizer")->capture_default_str()
      ->check(CLI::Range(260, 1 << 20));
  cmd->add_option("--tokenizer", opts->tokenizer,
                  "existing SentencePiece model (e.g. Llama-2's tokenizer.model): skip tokenizer training")
      ->check(CLI::ExistingFile);
  cmd->add_option("--val-fraction", opts->val_fraction, "fraction of documents held out for validation")->capture_default_str()
      ->check(CLI::Range(1e-6, 0.5));
  cmd->add_option("--seed", opts->seed, "seed of the validation split and tokenizer sampling")->capture_default_str();
  cmd->add_option("--max-docs", opts->max_docs, "use only the first N documents (0 = all)")->capture_default_str()
      ->check(int_in_range(0, kMaxFlagCount));
  cmd->add_option("--threads", opts->num_threads, "encoding threads (0 = all cores)")->capture_default_str()
      ->check(int_in_range(0, 4096));
  cmd->callback([opts] {
    const data::DatasetManifest m = data::prepare_dataset(*opts);
    auto h = [](uint64_t v) { return Progress::human(static_cast<double>(v)); };
    std::printf("dataset    %s\n", m.dir.c_str());
    std::printf("tokenizer  %s (vocab %d, eos %d)\n", m.tokenizer.c_str(), m.vocab_size, m.eos_id);
    std::printf("train      %s tokens, %s documents, %zu shard(s)\n", h(m.train_tokens).c_str(),
                h(m.train_docs).c_str(), m.train.size());
    std::printf("val        %s tokens, %s documents, %zu shard(s)\n", h(m.val_tokens).c_str(),
                h(m.val_docs).c_str(), m.val.size());
    std::printf("unigram baseline val perplexity %.2f (add-one unigram fitted on train; a model must beat it)\n",
                m.unigram_val_ppl);
  });
}

}  // namespace samba::cli
