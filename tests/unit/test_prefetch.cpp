// BatchPrefetcher: the background reader hands out exactly the loader's batches in order, its
// cursor is the consumed position (what a checkpoint saves), and a reader error reaches the
// caller after the batches read before it.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <unistd.h>

#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "samba/core/error.h"
#include "samba/data/loader.h"
#include "samba/data/shard.h"
#include "samba/train/components.h"

namespace fs = std::filesystem;

namespace {

struct Shards {
  fs::path dir;
  std::vector<std::string> paths;
  Shards() {
    dir = fs::temp_directory_path() /
          ("samba_prefetch_" + std::to_string(::getpid()) + "_" + std::to_string(std::random_device{}()));
    fs::create_directories(dir);
    int32_t next = 3;
    for (int s = 0; s < 3; ++s) {
      const std::string path = (dir / ("s" + std::to_string(s) + ".bin")).string();
      samba::data::ShardWriter w(path, 1000, 2);
      for (int d = 0; d < 2; ++d) {
        std::vector<int32_t> doc(70 + 31 * s + 9 * d);
        for (auto& t : doc) t = (next++ % 990) + 3;
        w.add_document(doc);
      }
      w.finish();
      paths.push_back(path);
    }
  }
  ~Shards() { fs::remove_all(dir); }
};

samba::data::LoaderOptions options(int64_t seq_len) {
  samba::data::LoaderOptions o;
  o.seq_len = seq_len;
  o.seed = 5;
  return o;
}

TEST(BatchPrefetcher, SameBatchesAndCursorAsTheLoader) {
  Shards shards;
  const int64_t seq = 16, micro = 3;
  samba::data::PackedLoader ahead(shards.paths, options(seq)), direct(shards.paths, options(seq));
  // Start past the beginning, as a resumed run does.
  for (int i = 0; i < 2; ++i) ahead.next_batch(micro), direct.next_batch(micro);
  samba::data::Cursor consumed;
  {
    samba::BatchPrefetcher prefetcher(ahead, micro, /*depth=*/2);
    EXPECT_EQ(prefetcher.cursor(), direct.cursor());
    // Several epochs' worth (the shards hold ~29 windows of 16).
    for (int i = 0; i < 40; ++i) {
      const torch::Tensor got = prefetcher.next();
      const std::vector<int32_t> want = direct.next_batch(micro);
      ASSERT_EQ(got.scalar_type(), torch::kInt32);
      ASSERT_EQ(got.sizes(), (std::vector<int64_t>{micro, seq + 1}));
      ASSERT_TRUE(std::equal(want.begin(), want.end(), got.data_ptr<int32_t>())) << "batch " << i;
      EXPECT_EQ(prefetcher.cursor(), direct.cursor()) << "batch " << i;
    }
    consumed = prefetcher.cursor();
  }  // destroyed with batches read ahead (or being read) and the thread stopping
  // The loader may have run ahead; restored to the consumed cursor (as the trainer does after
  // its loop) it continues the sequence.
  ahead.restore(consumed);
  EXPECT_EQ(ahead.next_batch(micro), direct.next_batch(micro));
}

TEST(BatchPrefetcher, ReaderErrorReachesTheCallerAfterEarlierBatches) {
  Shards shards;
  const int64_t seq = 16, micro = 4;
  // A sequential (evaluation) loader runs out: its last batch is short, which the prefetcher
  // refuses (training needs full batches).
  auto loader = samba::data::PackedLoader::sequential(shards.paths, seq);
  const int64_t full = static_cast<int64_t>(loader.num_windows()) / micro;
  ASSERT_GE(full, 2);
  samba::BatchPrefetcher prefetcher(loader, micro);
  for (int64_t i = 0; i < full; ++i) EXPECT_EQ(prefetcher.next().size(0), micro);
  try {
    prefetcher.next();
    FAIL() << "a short batch must be an error";
  } catch (const samba::Error& e) {
    EXPECT_NE(std::string(e.what()).find("short batch"), std::string::npos) << e.what();
  }
}

}  // namespace
