#include "samba/data/loader.h"

#include <algorithm>
#include <random>

#include "samba/core/error.h"

namespace samba::data {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

nlohmann::json Cursor::to_json() const { return {{"epoch", epoch}, {"index", index}, {"seed", seed}}; }

Cursor Cursor::from_json(const nlohmann::json& j, const std::string& where) {
  check(j.is_object(), where, ": the data cursor must be a JSON object {epoch, index, seed}, got ", j.dump());
  Cursor c;
  auto field = [&](const char* key, uint64_t& out) {
    check(j.contains(key), where, ": the data cursor has no \"", key, "\" field (", j.dump(),
          "). Fix: the checkpoint is incomplete; resume from an earlier one");
    check(j.at(key).is_number_unsigned() || (j.at(key).is_number_integer() && j.at(key).get<int64_t>() >= 0),
          where, ": data cursor field \"", key, "\" must be a non-negative integer, got ", j.at(key).dump());
    out = j.at(key).get<uint64_t>();
  };
  field("epoch", c.epoch);
  field("index", c.index);
  field("seed", c.seed);
  return c;
}

PackedLoader::PackedLoader(const std::vector<std::string>& shard_paths, const LoaderOptions& options)
    : options_(options) {
  check(!shard_paths.empty(), "data loader: no token shards given. Fix: run `samba data` and point the run at "
                              "its dataset directory");
  check(options.seq_len > 0, "data loader: seq_len must be positive, got ", options.seq_len);
  check(options.world >= 1 && options.rank >= 0 && options.rank < options.world, "data loader: rank ",
        options.rank, " is not in [0, world=", options.world, ")");
  for (const auto& path : shard_paths) {
    auto shard = std::make_shared<ShardReader>(path, ShardOpenOptions{options.verify});
    const ShardHeader& h = shard->header();
    if (shards_.empty()) {
      vocab_size_ = h.vocab_size;
      eos_id_ = h.eos_id;
    }
    check(h.vocab_size == vocab_size_ && h.eos_id == eos_id_, "token shard '", path, "' has vocab size ",
          h.vocab_size, " / eos ", h.eos_id, " but '", shard_paths.front(), "' has ", vocab_size_, " / ", eos_id_,
          ": shards from different tokenizers cannot be mixed. Fix: re-run `samba data` with one tokenizer");
    shard_begin_.push_back(total_tokens_);
    total_tokens_ += h.token_count;
    shards_.push_back(std::move(shard));
  }
  const uint64_t L = static_cast<uint64_t>(options.seq_len);
  num_windows_ = total_tokens_ > L ? (total_tokens_ - 1) / L : 0;
  check(num_windows_ >= static_cast<uint64_t>(options.world), "data loader: the shards starting with '",
        shard_paths.front(), "' hold ", total_tokens_, " tokens, which make ", num_windows_, " windows of seq_len ",
        L, " + 1, fewer than the ", options.world,
        " rank(s) need. Fix: use a shorter seq_len or prepare more data (`samba data`)");
  check(num_windows_ < (uint64_t{1} << 32), "data loader: ", num_windows_,
        " windows exceed the 2^32 the shuffled order can index; use a longer seq_len or fewer shards per run");
  cursor_.seed = options.seed;
}

PackedLoader PackedLoader::sequential(const std::vector<std::string>& shard_paths, int64_t seq_len, int rank,
                                      int world, bool verify) {
  LoaderOptions o;
  o.seq_len = seq_len;
  o.rank = rank;
  o.world = world;
  o.shuffle = false;
  o.verify = verify;
  return PackedLoader(shard_paths, o);
}

bool PackedLoader::exhausted() const {
  return !options_.shuffle && cursor_.index + static_cast<uint64_t>(options_.rank) >= num_windows_;
}

void PackedLoader::build_order(uint64_t epoch) const {
  if (order_epoch_ == epoch && !order_.empty()) return;
  order_.resize(num_windows_);
  for (uint64_t i = 0; i < num_windows_; ++i) order_[i] = static_cast<uint32_t>(i);
  // Derive the epoch's generator from (seed, epoch) so any epoch can be rebuilt directly on
  // resume without replaying earlier ones.
  uint64_t state = cursor_.seed ^ (epoch * 0xD1B54A32D192ED03ull);
  std::mt19937_64 rng(splitmix64(state));
  for (uint64_t i = num_windows_; i > 1; --i) {
    const uint64_t j = bounded_draw(rng, i);
    std::swap(order_[i - 1], order_[j]);
  }
  order_epoch_ = epoch;
}

uint64_t PackedLoader::window_at(uint64_t epoch, uint64_t pos) const {
  check(pos < num_windows_, "window position ", pos, " is past the ", num_windows_, " windows of the stream");
  if (!options_.shuffle) return pos;
  build_order(epoch);
  return order_[pos];
}

void PackedLoader::read_window(uint64_t w, int32_t* out) const {
  check(w < num_windows_, "window ", w, " is past the ", num_windows_, " windows of the stream");
  const uint64_t L = static_cast<uint64_t>(options_.seq_len);
  uint64_t pos = w * L, left = L + 1;
  size_t s = static_cast<size_t>(std::upper_bound(shard_begin_.begin(), shard_begin_.end(), pos) -
                                 shard_begin_.begin()) - 1;
  while (left > 0) {
    const ShardReader& shard = *shards_[s];
    const uint64_t local = pos - shard_begin_[s];
    const uint64_t n = std::min(left, shard.size() - local);
    shard.copy(local, n, out);
    out += n;
    pos += n;
    left -= n;
    ++s;
  }
}

uint64_t PackedLoader::window_ahead(uint64_t offset) const {
  check(options_.shuffle, "window_ahead: only training loaders look ahead");
  const uint64_t n = num_windows_;
  // cursor_.index < n always holds, so this neither overflows nor loops.
  const uint64_t pos = cursor_.index + offset % n;
  const uint64_t epoch = cursor_.epoch + offset / n + pos / n;
  return window_at(epoch, pos % n);
}

std::vector<int32_t> PackedLoader::next_batch(int64_t batch_size) {
  check(batch_size > 0, "next_batch: batch size must be positive, got ", batch_size);
  const uint64_t row = static_cast<uint64_t>(options_.seq_len) + 1;
  const uint64_t world = static_cast<uint64_t>(options_.world), rank = static_cast<uint64_t>(options_.rank);
  const uint64_t b = static_cast<uint64_t>(batch_size);
  std::vector<int32_t> batch;
  batch.reserve(static_cast<size_t>(b * row));
  if (options_.shuffle) {
    for (uint64_t i = 0; i < b; ++i) {
      batch.resize(batch.size() + row);
      read_window(window_ahead(rank * b + i), batch.data() + batch.size() - row);
    }
    const uint64_t advance = world * b;
    cursor_.epoch += advance / num_windows_;
    cursor_.index += advance % num_windows_;
    if (cursor_.index >= num_windows_) {
      cursor_.index -= num_windows_;
      cursor_.epoch += 1;
    }
    return batch;
  }
  for (uint64_t i = 0; i < b && !exhausted(); ++i) {
    batch.resize(batch.size() + row);
    read_window(cursor_.index + rank, batch.data() + batch.size() - row);
    cursor_.index += world;
  }
  return batch;
}

void PackedLoader::restore(const Cursor& c) {
  const uint64_t limit = options_.shuffle ? num_windows_ : num_windows_ + options_.world;
  check(c.index <= limit, "data cursor index ", c.index, " is past the ", num_windows_,
        " windows per epoch of this dataset (seq_len ", options_.seq_len,
        "): the checkpoint was made with other data or another seq_len. Fix: resume with the "
        "same dataset and settings, or start a fresh run");
  if (c.seed != cursor_.seed) order_epoch_ = UINT64_MAX;  // order depends on the seed
  cursor_ = c;
  // Loaders before v2 rolled over lazily and could stop exactly at the end of an epoch.
  if (options_.shuffle && cursor_.index == num_windows_) {
    cursor_.index = 0;
    cursor_.epoch += 1;
  }
}

}  // namespace samba::data
