#include "samba/data/prepare.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "samba/core/error.h"
#include "samba/core/progress.h"
#include "samba/data/loader.h"
#include "samba/data/shard.h"
#include "samba/data/tokenizer.h"
#include "samba/io/files.h"
#include "samba/io/run_dir.h"

namespace samba::data {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kManifestName = "dataset.json";
constexpr const char* kManifestFormat = "samba-dataset";
// Version 2 added sizes and CRC32Cs of every file (tokenizer files under "files", "bytes" per
// shard); version 1 manifests still load, with a warning that nothing can be verified.
constexpr int kManifestVersion = 2;
constexpr const char* kTokenizerText = "tokenizer_train.txt";

enum class SourceKind { kText, kJsonl };
struct Source {
  std::string path;
  SourceKind kind;
};

bool has_ext(const fs::path& p, std::initializer_list<const char*> exts) {
  const std::string e = p.extension().string();
  return std::any_of(exts.begin(), exts.end(), [&](const char* x) { return e == x; });
}

std::vector<Source> collect_sources(const std::vector<std::string>& inputs) {
  check(!inputs.empty(), "samba data: no inputs. Fix: pass --input FILE_OR_DIR (text files hold one document "
                         "each; .jsonl files one document per line in a \"text\" field)");
  std::vector<Source> out;
  auto add = [&](const fs::path& p, bool explicit_file) {
    if (has_ext(p, {".txt"})) {
      out.push_back({p.string(), SourceKind::kText});
    } else if (has_ext(p, {".jsonl", ".json"})) {
      out.push_back({p.string(), SourceKind::kJsonl});
    } else if (explicit_file) {
      fail("samba data: input '", p.string(), "' is neither .txt (one document) nor .jsonl (one {\"text\": ...} ",
           "per line). Fix: rename it or convert it");
    }
  };
  for (const auto& in : inputs) {
    std::error_code ec;
    if (fs::is_directory(in, ec)) {
      std::vector<fs::path> files;
      for (const auto& e : fs::recursive_directory_iterator(in)) {
        if (e.is_regular_file()) files.push_back(e.path());
      }
      std::sort(files.begin(), files.end());  // directory order is arbitrary; results must not be
      const size_t before = out.size();
      for (const auto& f : files) add(f, false);
      check(out.size() > before, "samba data: directory '", in, "' holds no .txt or .jsonl files");
    } else if (fs::is_regular_file(in, ec)) {
      add(in, true);
    } else {
      fail("samba data: input '", in, "' does not exist. Fix: for the default corpus run "
           "scripts/prepare_corpus.sh first (it writes data/corpus/brown)");
    }
  }
  return out;
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  check(f.good(), "samba data: cannot read '", path, "'");
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

bool blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isspace(c); });
}

// Calls fn(index, text) for every document in input order, stopping after max_docs (0 = all).
// Blank documents are skipped before numbering, so every pass sees the same indices.
void for_each_document(const std::vector<Source>& sources, int64_t max_docs,
                       const std::function<void(uint64_t, std::string&&)>& fn) {
  uint64_t index = 0;
  auto emit = [&](std::string&& text) {
    if (blank(text)) return true;
    if (max_docs > 0 && index >= static_cast<uint64_t>(max_docs)) return false;
    fn(index++, std::move(text));
    return true;
  };
  for (const auto& src : sources) {
    if (src.kind == SourceKind::kText) {
      if (!emit(read_text(src.path))) return;
      continue;
    }
    std::ifstream f(src.path, std::ios::binary);
    check(f.good(), "samba data: cannot read '", src.path, "'");
    std::string line;
    for (uint64_t lineno = 1; std::getline(f, line); ++lineno) {
      if (blank(line)) continue;
      json j;
      try {
        j = json::parse(line);
      } catch (const std::exception& e) {
        fail("samba data: '", src.path, "' line ", lineno, " is not valid JSON (", e.what(),
             "). Fix: JSONL holds one JSON object per line");
      }
      check(j.is_object() && j.contains("text") && j["text"].is_string(), "samba data: '", src.path, "' line ",
            lineno, " has no string field \"text\". Fix: write each document as {\"text\": \"...\"}");
      if (!emit(j["text"].get<std::string>())) return;
    }
  }
}

// A seeded subset of [0, n): the validation documents.
std::vector<bool> choose_validation(uint64_t n, const PrepareOptions& o) {
  check(o.val_fraction > 0.0 && o.val_fraction < 0.5, "samba data: --val-fraction ", o.val_fraction,
        " must be in (0, 0.5)");
  check(n >= 2, "samba data: found ", n, " document(s); a train/validation split needs at least 2. Fix: add "
                "inputs (each .txt file is one document)");
  uint64_t k = static_cast<uint64_t>(std::llround(o.val_fraction * static_cast<double>(n)));
  k = std::max<uint64_t>(k, static_cast<uint64_t>(std::max<int64_t>(1, o.min_val_docs)));
  k = std::min<uint64_t>(k, n - 1);
  std::vector<uint64_t> idx(n);
  for (uint64_t i = 0; i < n; ++i) idx[i] = i;
  uint64_t state = o.seed ^ 0x5EEDDA7Aull;
  std::mt19937_64 rng(splitmix64(state));
  for (uint64_t i = 0; i < k; ++i) std::swap(idx[i], idx[i + bounded_draw(rng, n - i)]);
  std::vector<bool> is_val(n, false);
  for (uint64_t i = 0; i < k; ++i) is_val[idx[i]] = true;
  return is_val;
}

// Writes the training split's lines for sentencepiece (which treats each line as a sentence).
void write_tokenizer_text(const std::vector<Source>& sources, const PrepareOptions& o, const std::vector<bool>& is_val,
                          const std::string& path) {
  std::ofstream out(path, std::ios::binary);
  check(out.good(), "samba data: cannot write '", path, "'");
  for_each_document(sources, o.max_docs, [&](uint64_t i, std::string&& text) {
    if (is_val[i]) return;  // the tokenizer must not see held-out text either
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find('\n', start);
      if (end == std::string::npos) end = text.size();
      size_t stop = end;
      if (stop > start && text[stop - 1] == '\r') --stop;
      if (stop > start) out.write(text.data() + start, static_cast<std::streamsize>(stop - start)) << '\n';
      start = end + 1;
    }
  });
  check(out.good(), "samba data: writing '", path, "' failed (disk full?)");
}

// Train shards roll over at shard_tokens; each finished shard is recorded.
class SplitWriter {
 public:
  SplitWriter(std::string dir, std::string prefix, const Tokenizer& tok, uint64_t shard_tokens)
      : dir_(std::move(dir)), prefix_(std::move(prefix)), tok_(tok), shard_tokens_(shard_tokens),
        counts_(static_cast<size_t>(tok.vocab_size()), 0) {}

  void add(const std::vector<int32_t>& ids) {
    if (!writer_) open();
    writer_->add_document(ids);
    for (int32_t t : ids) counts_[static_cast<size_t>(t)] += 1;
    counts_[static_cast<size_t>(tok_.eos_id())] += 1;
    if (writer_->header().token_count >= shard_tokens_) close();
  }
  std::vector<ShardInfo> finish() {
    close();
    return shards_;
  }
  const std::vector<uint64_t>& counts() const { return counts_; }

 private:
  void open() {
    char name[64];
    std::snprintf(name, sizeof(name), "%s_%03zu.bin", prefix_.c_str(), shards_.size());
    writer_ = std::make_unique<ShardWriter>((fs::path(dir_) / name).string(), tok_.vocab_size(), tok_.eos_id());
  }
  void close() {
    if (!writer_) return;
    ShardHeader h = writer_->finish();
    shards_.push_back({fs::path(writer_->path()).filename().string(), h.token_count, h.document_count,
                       h.payload_crc32c, fs::file_size(writer_->path())});
    writer_.reset();
  }

  std::string dir_, prefix_;
  const Tokenizer& tok_;
  uint64_t shard_tokens_;
  std::unique_ptr<ShardWriter> writer_;
  std::vector<ShardInfo> shards_;
  std::vector<uint64_t> counts_;
};

json shards_json(const std::vector<ShardInfo>& shards) {
  json a = json::array();
  for (const auto& s : shards) {
    a.push_back({{"file", s.file},
                 {"tokens", s.tokens},
                 {"documents", s.documents},
                 {"crc32c", io::crc32c_hex(s.crc32c)},
                 {"bytes", s.bytes}});
  }
  return a;
}

FileChecksum checksum_of(const fs::path& dir, const std::string& name) {
  const fs::path p = dir / name;
  return {name, fs::file_size(p), io::file_crc32c(p.string())};
}

// What an interrupted `samba data` leaves behind: shard temporaries (ShardWriter writes
// NAME.bin.tmp and renames it when complete) and the tokenizer's training text. Only names this
// tool writes are touched, and only while this process holds the directory's lock.
void remove_leftovers(const fs::path& out) {
  std::vector<std::string> removed;
  std::error_code ec;
  for (fs::directory_iterator it(out, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const bool shard_tmp = name.size() > 8 && name.compare(name.size() - 8, 8, ".bin.tmp") == 0 &&
                           (name.rfind("train_", 0) == 0 || name.rfind("val_", 0) == 0);
    if (!shard_tmp && name != kTokenizerText) continue;
    std::error_code rm;
    fs::remove(it->path(), rm);
    if (!rm) removed.push_back(name);
  }
  if (!removed.empty()) {
    std::string list;
    for (const auto& r : removed) list += (list.empty() ? "" : ", ") + r;
    spdlog::warn("samba data: removed {} leftover file(s) of an interrupted earlier run in {}: {}", removed.size(),
                 out.string(), list);
  }
}

// Deletes a temporary file when the scope ends, on success and on errors (a full disk must
// not stay full because of our temporaries).
class RemoveOnExit {
 public:
  explicit RemoveOnExit(std::string path) : path_(std::move(path)) {}
  ~RemoveOnExit() {
    std::error_code ec;
    fs::remove(path_, ec);
  }
  RemoveOnExit(const RemoveOnExit&) = delete;
  RemoveOnExit& operator=(const RemoveOnExit&) = delete;

 private:
  std::string path_;
};

}  // namespace

double unigram_perplexity(const std::vector<uint64_t>& train_counts, const std::vector<uint64_t>& val_counts) {
  check(train_counts.size() == val_counts.size() && !train_counts.empty(),
        "unigram_perplexity: count vectors must have the vocabulary's size");
  double train_total = 0, val_total = 0, nll = 0;
  for (uint64_t c : train_counts) train_total += static_cast<double>(c);
  const double denom = train_total + static_cast<double>(train_counts.size());  // add-one smoothing
  for (size_t t = 0; t < val_counts.size(); ++t) {
    if (val_counts[t] == 0) continue;
    val_total += static_cast<double>(val_counts[t]);
    nll -= static_cast<double>(val_counts[t]) * std::log((static_cast<double>(train_counts[t]) + 1.0) / denom);
  }
  check(val_total > 0, "unigram_perplexity: the validation split has no tokens");
  return std::exp(nll / val_total);
}

std::vector<std::string> DatasetManifest::train_paths() const {
  std::vector<std::string> p;
  for (const auto& s : train) p.push_back((fs::path(dir) / s.file).string());
  return p;
}

std::vector<std::string> DatasetManifest::val_paths() const {
  std::vector<std::string> p;
  for (const auto& s : val) p.push_back((fs::path(dir) / s.file).string());
  return p;
}

DatasetManifest prepare_dataset(const PrepareOptions& o) {
  check(!o.out_dir.empty(), "samba data: no output directory. Fix: pass --out DIR");
  const std::vector<Source> sources = collect_sources(o.inputs);
  const fs::path out(o.out_dir);
  // Two `samba data` into one directory would interleave shards; the lock also makes it safe
  // to delete the temporaries an interrupted (killed) earlier run left.
  const io::RunLock lock = io::RunLock::acquire(o.out_dir, "samba data");
  remove_leftovers(out);
  // A stale manifest would vouch for the shards this run is about to overwrite.
  fs::remove(out / kManifestName);

  uint64_t n_docs = 0;
  for_each_document(sources, o.max_docs, [&](uint64_t, std::string&&) { ++n_docs; });
  const std::vector<bool> is_val = choose_validation(n_docs, o);
  spdlog::info("samba data: {} documents from {} file(s)", n_docs, sources.size());

  const std::string model_path = (out / "tokenizer.model").string();
  bool trained = false;
  if (o.tokenizer.empty()) {
    const std::string text_path = (out / kTokenizerText).string();
    const RemoveOnExit remove_text(text_path);
    write_tokenizer_text(sources, o, is_val, text_path);
    spdlog::info("samba data: training a {}-piece BPE tokenizer", o.vocab_size);
    TrainTokenizerOptions t;
    t.input = text_path;
    t.model_prefix = (out / "tokenizer").string();
    t.vocab_size = o.vocab_size;
    t.character_coverage = o.character_coverage;
    t.input_sentence_size = o.tokenizer_sentences;
    t.seed = static_cast<uint32_t>(o.seed);
    t.num_threads = o.num_threads;
    train_tokenizer(t);
    trained = true;
  } else {
    std::error_code ec;
    check(fs::is_regular_file(o.tokenizer, ec), "samba data: --tokenizer '", o.tokenizer, "' does not exist");
    if (!fs::exists(model_path) || !fs::equivalent(o.tokenizer, model_path)) {
      fs::copy_file(o.tokenizer, model_path, fs::copy_options::overwrite_existing);
      fs::remove(out / "tokenizer.vocab");  // an earlier run's, describing another tokenizer
    }
  }
  const Tokenizer tok = Tokenizer::load(model_path);

  SplitWriter train(out.string(), "train", tok, std::max<uint64_t>(1, o.shard_tokens));
  SplitWriter val(out.string(), "val", tok, std::max<uint64_t>(1, o.shard_tokens));
  {
    ProgressOptions po;
    po.unit = "docs";
    Progress bar("tokenizing", n_docs, po, o.progress ? stderr : nullptr);
    const unsigned threads = o.num_threads > 0 ? static_cast<unsigned>(o.num_threads)
                                               : std::max(1u, std::thread::hardware_concurrency());
    // Documents are encoded a chunk at a time on all threads and written in input order, so
    // the shards do not depend on the thread count.
    std::vector<std::string> chunk;
    std::vector<uint64_t> chunk_index;
    uint64_t tokens = 0;
    auto flush = [&] {
      std::vector<std::vector<int32_t>> ids(chunk.size());
      std::vector<std::thread> pool;
      std::vector<std::exception_ptr> errors(threads);
      for (unsigned t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
          try {
            for (size_t i = t; i < chunk.size(); i += threads) ids[i] = tok.encode(chunk[i]);
          } catch (...) {
            errors[t] = std::current_exception();
          }
        });
      }
      for (auto& th : pool) th.join();
      for (auto& e : errors) {
        if (e) std::rethrow_exception(e);
      }
      for (size_t i = 0; i < chunk.size(); ++i) {
        (is_val[chunk_index[i]] ? val : train).add(ids[i]);
        tokens += ids[i].size() + 1;
      }
      bar.set_postfix(Progress::human(static_cast<double>(tokens)) + " tokens");
      bar.advance(chunk.size());
      chunk.clear();
      chunk_index.clear();
    };
    for_each_document(sources, o.max_docs, [&](uint64_t i, std::string&& text) {
      chunk.push_back(std::move(text));
      chunk_index.push_back(i);
      if (chunk.size() >= 64 * threads) flush();
    });
    flush();
    bar.finish();
  }

  DatasetManifest m;
  m.dir = out.string();
  m.tokenizer = fs::absolute(model_path).string();
  m.vocab_size = tok.vocab_size();
  m.eos_id = tok.eos_id();
  m.bos_id = tok.bos_id();
  m.unigram_val_ppl = unigram_perplexity(train.counts(), val.counts());
  m.train = train.finish();
  m.val = val.finish();
  for (const auto& s : m.train) m.train_tokens += s.tokens, m.train_docs += s.documents;
  for (const auto& s : m.val) m.val_tokens += s.tokens, m.val_docs += s.documents;
  json files = json::object();
  for (const char* name : {"tokenizer.model", "tokenizer.vocab"}) {
    if (!fs::exists(out / name)) continue;
    m.files.push_back(checksum_of(out, name));
    files[name] = {{"bytes", m.files.back().bytes}, {"crc32c", io::crc32c_hex(m.files.back().crc32c)}};
  }

  json j = {
      {"format", kManifestFormat},
      {"version", kManifestVersion},
      {"tokenizer", "tokenizer.model"},
      {"tokenizer_trained_here", trained},
      {"files", files},
      {"vocab_size", m.vocab_size},
      {"eos_id", m.eos_id},
      {"bos_id", m.bos_id},
      {"token_dtype", token_bytes_for_vocab(static_cast<uint32_t>(m.vocab_size)) == 2 ? "uint16" : "uint32"},
      {"seed", o.seed},
      {"val_fraction", o.val_fraction},
      {"sources", o.inputs},
      {"train", {{"tokens", m.train_tokens}, {"documents", m.train_docs}, {"shards", shards_json(m.train)}}},
      {"val", {{"tokens", m.val_tokens}, {"documents", m.val_docs}, {"shards", shards_json(m.val)}}},
      {"unigram_baseline", {{"val_ppl", m.unigram_val_ppl}, {"smoothing", "add-one"}, {"fitted_on", "train"}}},
  };
  io::write_file_atomic((out / kManifestName).string(), j.dump(2) + "\n");
  return m;
}

DatasetManifest load_dataset_manifest(const std::string& path) {
  fs::path file = fs::path(path);
  std::error_code ec;
  if (fs::is_directory(file, ec)) file /= kManifestName;
  check(fs::is_regular_file(file, ec), "no dataset manifest at '", file.string(),
        "'. Fix: run `samba data --out ", fs::path(file).parent_path().string(), "` first (it writes ",
        kManifestName, " last, so a missing one can also mean an interrupted run)");
  json j;
  try {
    j = json::parse(io::read_file(file.string()));
  } catch (const json::exception& e) {
    fail("dataset manifest '", file.string(), "' is not valid JSON (", e.what(), "). Fix: re-run `samba data`");
  }
  const std::string where = "dataset manifest '" + file.string() + "'";
  check(j.is_object() && j.value("format", "") == kManifestFormat, where,
        " is not a samba dataset manifest (no \"format\": \"", kManifestFormat, "\")");
  const int version = j.value("version", 0);
  check(version == 1 || version == kManifestVersion, where, " has version ", version, ", this build reads 1 and ",
        kManifestVersion, ". Fix: re-run `samba data`");
  DatasetManifest m;
  m.dir = file.parent_path().string();
  try {
    m.tokenizer = (fs::path(m.dir) / j.at("tokenizer").get<std::string>()).string();
    m.vocab_size = j.at("vocab_size").get<int32_t>();
    m.eos_id = j.at("eos_id").get<int32_t>();
    m.bos_id = j.at("bos_id").get<int32_t>();
    m.unigram_val_ppl = j.at("unigram_baseline").at("val_ppl").get<double>();
    auto read_split = [&](const char* name, std::vector<ShardInfo>& shards, uint64_t& tokens, uint64_t& docs) {
      const json& s = j.at(name);
      tokens = s.at("tokens").get<uint64_t>();
      docs = s.at("documents").get<uint64_t>();
      for (const json& e : s.at("shards")) {
        ShardInfo info;
        info.file = e.at("file").get<std::string>();
        info.tokens = e.at("tokens").get<uint64_t>();
        info.documents = e.at("documents").get<uint64_t>();
        info.crc32c = static_cast<uint32_t>(std::stoul(e.at("crc32c").get<std::string>(), nullptr, 16));
        if (version >= 2) info.bytes = e.at("bytes").get<uint64_t>();
        shards.push_back(info);
      }
      check(!shards.empty(), where, " lists no ", name, " shards");
    };
    read_split("train", m.train, m.train_tokens, m.train_docs);
    read_split("val", m.val, m.val_tokens, m.val_docs);
    if (version >= 2) {
      for (const auto& [name, e] : j.at("files").items())
        m.files.push_back({name, e.at("bytes").get<uint64_t>(),
                           static_cast<uint32_t>(std::stoul(e.at("crc32c").get<std::string>(), nullptr, 16))});
      const std::string tokenizer_name = fs::path(m.tokenizer).filename().string();
      check(std::any_of(m.files.begin(), m.files.end(), [&](const FileChecksum& f) { return f.file == tokenizer_name; }),
            where, " has no checksum of its tokenizer '", tokenizer_name, "'. Fix: re-run `samba data`");
    }
  } catch (const json::exception& e) {
    fail(where, " is missing a field or has a wrong type (", e.what(), "). Fix: re-run `samba data`");
  } catch (const std::logic_error& e) {
    fail(where, " has a malformed crc32c (", e.what(), "). Fix: re-run `samba data`");
  }
  check(fs::is_regular_file(m.tokenizer, ec), where, " names tokenizer '", m.tokenizer,
        "', which does not exist. Fix: re-run `samba data`");
  if (version == 1)
    spdlog::warn("{} was written by an older samba (version 1) and has no checksums of its tokenizer files, so a "
                 "damaged tokenizer cannot be detected. Fix: re-run `samba data` to add them", where);
  // A truncated or bit-flipped tokenizer would silently change every token id.
  for (const auto& f : m.files) {
    const std::string file_path = (fs::path(m.dir) / f.file).string();
    check(fs::is_regular_file(file_path, ec), where, " names '", f.file, "', which does not exist in ", m.dir,
          ". Fix: restore it or re-run `samba data`");
    const uint64_t bytes = fs::file_size(file_path, ec);
    const uint32_t crc = bytes == f.bytes ? io::file_crc32c(file_path) : 0;
    check(bytes == f.bytes && crc == f.crc32c, "'", file_path, "' is damaged: ", bytes, " bytes",
          bytes == f.bytes ? ", CRC32C " + io::crc32c_hex(crc) : std::string(), ", but ", where, " recorded ", f.bytes,
          " bytes, CRC32C ", io::crc32c_hex(f.crc32c),
          " (truncated or changed after `samba data` wrote it). Fix: restore it or re-run `samba data`");
  }
  for (const auto* split : {&m.train, &m.val}) {
    for (const auto& s : *split) {
      const std::string shard_path = (fs::path(m.dir) / s.file).string();
      if (s.bytes > 0) {
        const uint64_t bytes = fs::file_size(shard_path, ec);
        check(!ec && bytes == s.bytes, "token shard '", shard_path, "' is ", ec ? std::string("missing") :
              std::to_string(bytes) + " bytes", " but ", where, " recorded ", s.bytes,
              " bytes (truncated or replaced). Fix: re-run `samba data`");
      }
      // Validation shards are small and read at every evaluation: verify their payload now
      // rather than after the first training steps were spent.
      ShardReader r(shard_path, ShardOpenOptions{split == &m.val});
      check(r.size() == s.tokens && r.header().payload_crc32c == s.crc32c &&
                r.header().vocab_size == static_cast<uint32_t>(m.vocab_size),
            "token shard '", shard_path, "' does not match ", where,
            " (token count, CRC or vocab differ): the directory mixes two runs. Fix: re-run `samba data`");
    }
  }
  return m;
}

}  // namespace samba::data
