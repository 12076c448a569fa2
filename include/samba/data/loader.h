#pragma once
// Packed language-model batches over token shards.
//
// The shards form one concatenated token stream. Window w covers tokens
// [w*seq_len, w*seq_len + seq_len + 1): inputs are its first seq_len tokens, targets its last
// seq_len, so consecutive windows overlap by one token and every target position is predicted
// exactly once per epoch (a tail shorter than seq_len is not used).
//
// Training mode shuffles the window order per epoch with a portable RNG (mt19937_64, whose
// output the standard fixes, plus our own bounded draw and Fisher-Yates), so the same seed
// gives the same batches on every platform. The epochs' orders are concatenated into one
// global sequence of windows (no window is dropped at an epoch's end: a batch may straddle
// two epochs). Data parallel: a call next_batch(b) consumes the next world*b positions of that
// sequence and rank r takes the r-th block of b. So a step of `accum` micro-batches on `world`
// ranks reads exactly the windows a one-rank run with accum*world micro-batches reads, and the
// one cursor (a global position) describes every rank and survives a change of world size.
//
// Sequential mode (evaluation) keeps the natural order, makes one pass and does not roll over.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "samba/data/shard.h"

namespace samba::data {

struct Cursor {
  uint64_t epoch = 0;
  uint64_t index = 0;  // global position within the epoch's order (counts all ranks' windows)
  uint64_t seed = 0;

  nlohmann::json to_json() const;
  // Throws samba::Error naming `where` when a field is missing or has the wrong type.
  static Cursor from_json(const nlohmann::json& j, const std::string& where = "data cursor");
  bool operator==(const Cursor& o) const { return epoch == o.epoch && index == o.index && seed == o.seed; }
};

struct LoaderOptions {
  int64_t seq_len = 0;
  uint64_t seed = 0;
  int rank = 0;
  int world = 1;
  bool shuffle = true;  // false: sequential evaluation pass (no shuffle, no rollover)
  bool verify = true;   // check every shard's payload CRC when opening
};

class PackedLoader {
 public:
  PackedLoader(const std::vector<std::string>& shard_paths, const LoaderOptions& options);

  // Evaluation: every window of `seq_len` in stream order, split across ranks like training.
  static PackedLoader sequential(const std::vector<std::string>& shard_paths, int64_t seq_len, int rank = 0,
                                 int world = 1, bool verify = true);

  // batch_size rows of seq_len+1 tokens, row-major. Training mode always returns full batches
  // (rolling into the next epoch as needed); sequential mode returns a short final batch and
  // then an empty vector.
  std::vector<int32_t> next_batch(int64_t batch_size);
  // Training mode: the window at global position `offset` past the cursor (crossing epochs),
  // without moving the cursor.
  uint64_t window_ahead(uint64_t offset) const;

  // Tokens of window `w` (seq_len + 1 of them) in stream order, independent of the cursor.
  void read_window(uint64_t w, int32_t* out) const;
  // The window index the loader will hand this rank at global position `pos` of `epoch`.
  uint64_t window_at(uint64_t epoch, uint64_t pos) const;

  uint64_t num_windows() const { return num_windows_; }       // in the stream
  uint64_t windows_per_epoch() const { return num_windows_; }  // every window, every epoch
  uint64_t total_tokens() const { return total_tokens_; }
  int64_t seq_len() const { return options_.seq_len; }
  uint32_t vocab_size() const { return vocab_size_; }
  int32_t eos_id() const { return eos_id_; }
  bool exhausted() const;  // sequential mode only: the pass is over

  Cursor cursor() const { return cursor_; }
  int rank() const { return options_.rank; }
  int world() const { return options_.world; }
  // Continues from `c` exactly: the same batches follow as after the cursor() that produced it.
  void restore(const Cursor& c);

 private:
  void build_order(uint64_t epoch) const;

  LoaderOptions options_;
  std::vector<std::shared_ptr<ShardReader>> shards_;
  std::vector<uint64_t> shard_begin_;  // first stream position of each shard
  uint64_t total_tokens_ = 0;
  uint64_t num_windows_ = 0;
  uint32_t vocab_size_ = 0;
  int32_t eos_id_ = -1;
  Cursor cursor_;
  // A cache of the shuffled order of one epoch, rebuilt on demand from (seed, epoch).
  mutable std::vector<uint32_t> order_;
  mutable uint64_t order_epoch_ = UINT64_MAX;
};

// The permutation machinery, exposed for tests and for anyone who needs the same draws.
uint64_t splitmix64(uint64_t& state);
// Uniform in [0, n) by rejection, so no implementation-defined distribution is involved.
template <typename Rng>
uint64_t bounded_draw(Rng& rng, uint64_t n) {
  const uint64_t limit = UINT64_MAX - (UINT64_MAX % n + 1) % n;  // largest multiple of n, minus 1
  uint64_t r;
  do {
    r = rng();
  } while (r > limit);
  return r % n;
}

}  // namespace samba::data
