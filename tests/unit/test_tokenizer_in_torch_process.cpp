// The sentencepiece + libtorch trap: linking both into one program
// crashes before main on Debian (see samba/data/spm_api.h). This executable links torch and uses the tokenizer through
// the dlopen'd bridge; reaching the assertions at all is half the test.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "samba/data/tokenizer.h"

#include "samba/io/files.h"

namespace fs = std::filesystem;

TEST(TokenizerInTorchProcess, TrainEncodeDecodeBesideTorch) {
  // Make sure torch (and the protobuf it drags in) is initialised and in use first.
  torch::Tensor t = torch::ones({4, 4}).matmul(torch::ones({4, 4}));
  ASSERT_EQ(t.sum().item<float>(), 64.0f);

  const fs::path dir = fs::temp_directory_path() /
                       ("samba_tok_torch_" + std::to_string(::getpid()) + "_" + std::to_string(std::random_device{}()));
  fs::create_directories(dir);
  {
    std::mt19937 rng(3);
    const char* words[] = {"state", "space", "model", "attention", "window", "sliding", "token", "layer", "mamba",
                           "samba", "gate", "scan", "memory", "recall", "length", "extrapolate"};
    std::ofstream f(dir / "text.txt");
    for (int line = 0; line < 300; ++line) {
      for (int w = 0; w < 12; ++w) f << words[rng() % 16] << (w == 11 ? ".\n" : " ");
    }
  }
  samba::data::TrainTokenizerOptions o;
  o.input = (dir / "text.txt").string();
  o.model_prefix = (dir / "tok").string();
  o.vocab_size = 300;
  o.num_threads = 1;
  samba::data::Tokenizer tok = samba::data::Tokenizer::load(samba::data::train_tokenizer(o));
  EXPECT_EQ(tok.vocab_size(), 300);
  const std::string text = "the sliding window attention beside a mamba scan.\nDone: 42 tokens!";
  const std::vector<int32_t> ids = tok.encode(text);
  EXPECT_FALSE(ids.empty());
  EXPECT_EQ(tok.decode(ids), text);

  // Token ids flow into torch as they will in training.
  torch::Tensor ids_t = torch::from_blob(const_cast<int32_t*>(ids.data()), {static_cast<int64_t>(ids.size())},
                                         torch::kInt32).to(torch::kInt64);
  EXPECT_LT(ids_t.max().item<int64_t>(), 300);
  EXPECT_FALSE(samba::data::spm_module_path().empty());
  samba::io::remove_tree(fs::path(dir).string());
}
