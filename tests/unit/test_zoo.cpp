// The model zoo: every config with an official counterpart (microsoft/Samba lit_gpt/config.py)
// has exactly the official parameter count, computed here independently from the official
// fields module by module; paper-size configs land within 3% of the paper's figure; every
// tiny config builds, its analytic count equals the real one, and a forward/backward runs.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <tuple>

#include "samba/model/analysis.h"
#include "samba/model/model.h"

namespace fs = std::filesystem;

namespace {

std::vector<fs::path> zoo(bool tiny) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(fs::path(SAMBA_SOURCE_DIR) / "configs" / "models")) {
    const std::string name = e.path().filename().string();
    if (e.path().extension() != ".yaml") continue;
    if ((name.rfind("tiny-", 0) == 0) == tiny) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The fields of an official lit_gpt Config that decide the parameter count, as written in
// microsoft/Samba lit_gpt/config.py (unset fields keep the dataclass defaults).
struct Official {
  const char* name;
  int64_t n_layer, n_head, n_embd, intermediate_size;
  int64_t n_query_groups = 0;  // None = n_head
  int64_t padding_multiple = 64;
  int64_t block_size = 4096;
  int64_t local_window = -1;
  int64_t mb_per_layer = -1, ret_per_layer = -1, gla_per_layer = -1;
  int64_t full_per_layer = 1000000;
  std::vector<int64_t> attn_layer_pos;  // empty = None
  bool nope = false, mamba = false, mamba_init = false, use_mega = false, abl_mamba = false, mamba_swa_mlp = false;
};

int64_t find_multiple(int64_t n, int64_t k) { return n % k == 0 ? n : n + k - n % k; }

// Module by module, as the official classes construct them (model.py, mamba_simple.py, gla.py,
// multiscale_retention.py, mega.py + s6.py); norms are weight-only RMSNorms.
int64_t official_mamba(int64_t d) {  // Mamba(d): expand 2, d_state 16, d_conv 4, dt_rank ceil(d/16)
  const int64_t e = 2 * d, r = (d + 15) / 16;
  return d * 2 * e + (e * 4 + e) + e * (r + 32) + (r * e + e) + e * 16 + e + e * d;
}
int64_t official_attention(int64_t d, int64_t heads, int64_t groups) {  // attn (fused qkv) + proj, no bias
  const int64_t hs = d / heads;
  return d * (heads + 2 * groups) * hs + d * d;
}
int64_t official_swiglu(int64_t d, int64_t hidden) { return 3 * d * hidden; }  // w1, w2, w3
int64_t official_gla(int64_t d) {  // num_heads d // 384, expand_k 0.5, expand_v 1, low rank 16
  const int64_t h = d / 384, dk = d / 2, dv = d;
  return 2 * d * dk + 2 * d * dv + (d * 16 + 16 * dk + dk) + dv * d + dv / h;
}
int64_t official_retnet(int64_t d, int64_t heads) {  // num_heads n_head // 2, expand_k 1, expand_v 2
  const int64_t dk = d, dv = 2 * d;
  return 2 * d * dk + 2 * d * dv + dv * d + dv / heads;
}
int64_t official_mega(int64_t d) {  // S6GatedAttention(d): own norm, S6 (dt_rank ceil(d/32)), zdim 128
  const int64_t r = (d + 31) / 32, z = 128, h = d;
  const int64_t s6 = (d * 4 + d) + d * (r + 32) + (r * d + d) + d * 16 + d;
  return d + s6 + (d * h + h) + (d * (z + h + 2 * d) + z + h + 2 * d) + (h * d + d) + 4 * z + 2 * z;
}

int64_t official_params(const Official& o, int64_t vocab) {
  const int64_t d = o.n_embd;
  const int64_t v = find_multiple(vocab, o.padding_multiple);
  const bool tied = o.mamba || o.mamba_init;
  int64_t n = v * d * (tied ? 1 : 2) + d;  // wte (+ lm_head) + ln_f
  if (o.mamba) return n + o.n_layer * (official_mamba(d) + d);
  const int64_t groups = o.n_query_groups > 0 ? o.n_query_groups : o.n_head;
  for (int64_t i = 0; i < o.n_layer; ++i) {
    if (o.mamba_swa_mlp) {
      n += 2 * d + official_mamba(d) + official_attention(d, o.n_head, groups);
    } else if (o.use_mega) {
      n += official_mega(d);
    } else {
      n += d;  // norm_1
      bool use_mamba = false, use_retnet = false, use_gla = false;
      if (!o.attn_layer_pos.empty()) {
        use_mamba = std::find(o.attn_layer_pos.begin(), o.attn_layer_pos.end(), i) == o.attn_layer_pos.end();
      } else {
        use_mamba = o.mb_per_layer > 0 && i % o.mb_per_layer == 0;
        use_retnet = o.ret_per_layer > 0 && i % o.ret_per_layer == 0;
        use_gla = o.gla_per_layer > 0 && i % o.gla_per_layer == 0;
      }
      if (use_mamba) n += o.abl_mamba ? official_swiglu(d, 2 * d) : official_mamba(d);
      else if (use_retnet) n += official_retnet(d, o.n_head / 2);
      else if (use_gla) n += official_gla(d);
      else n += official_attention(d, o.n_head, groups);
    }
    n += d + official_swiglu(d, o.intermediate_size);  // norm_2 + mlp
  }
  return n;
}

// Which layer kinds the official block i uses, in our pattern characters.
std::string official_pattern(const Official& o) {
  std::string p;
  for (int64_t i = 0; i < o.n_layer; ++i) {
    const bool local = o.local_window > 0 && i % o.full_per_layer < o.full_per_layer - 1;
    const char attn = local ? '*' : 'A';
    if (o.mamba) { p += 'M'; continue; }
    if (o.mamba_swa_mlp) { p += std::string("M") + attn + "-"; continue; }
    if (o.use_mega) { p += "S-"; continue; }
    char mixer = attn;
    if (!o.attn_layer_pos.empty()) {
      if (std::find(o.attn_layer_pos.begin(), o.attn_layer_pos.end(), i) == o.attn_layer_pos.end()) mixer = 'M';
    } else if (o.mb_per_layer > 0 && i % o.mb_per_layer == 0) {
      mixer = o.abl_mamba ? '2' : 'M';
    } else if (o.ret_per_layer > 0 && i % o.ret_per_layer == 0) {
      mixer = 'R';
    } else if (o.gla_per_layer > 0 && i % o.gla_per_layer == 0) {
      mixer = 'G';
    }
    p += std::string(1, mixer) + "-";
  }
  return p;
}

std::vector<Official> official_table() {
  auto s421 = [](const char* name) {
    Official o{name, 12, 12, 1536, 4096};
    o.local_window = 2048;
    return o;
  };
  auto s13 = [](const char* name) {
    Official o{name, 18, 18, 2304, 6144};
    o.local_window = 2048;
    o.mamba_init = true;
    return o;
  };
  std::vector<Official> t;
  auto add = [&](Official o, auto&& edit) { edit(o); t.push_back(o); };
  add(s421("LLaMA_438M"), [](Official& o) { o.local_window = -1; });
  add(s421("S6Mega_438M"), [](Official& o) { o.use_mega = o.mamba_init = true; });
  add(s421("LLaMA_438M_SWA"), [](Official&) {});
  add(s421("LLaMA_438M_SWA_full"), [](Official& o) { o.full_per_layer = 2; });
  add(s421("LLaMA_438M_SWA_mqa"), [](Official& o) { o.intermediate_size = 4608, o.n_query_groups = 1; });
  add(s421("LLaMA_438M_SWA_mqa6"), [](Official& o) { o.n_head = 6, o.intermediate_size = 4608, o.n_query_groups = 1; });
  add(s421("LLaMA_438M_SWA_gqa2"), [](Official& o) { o.intermediate_size = 4608, o.n_query_groups = 2; });
  add(s421("LLaMA_438M_SWA_gqa4"), [](Official& o) { o.intermediate_size = 4608, o.n_query_groups = 4; });
  add(s421("LLaMA_438M_SWA_8k4k"), [](Official& o) { o.n_layer = 14, o.block_size = 8192, o.local_window = 4096, o.mamba_init = true; });
  add(s421("LLaMA_438M_SWA_8k2k"), [](Official& o) { o.n_layer = 14, o.block_size = 8192, o.mamba_init = true; });
  add(s421("Samba_421M"), [](Official& o) { o.mb_per_layer = 2, o.mamba_init = true; });
  add(s421("Samba_421M_nope"), [](Official& o) { o.mb_per_layer = 2, o.mamba_init = o.nope = true; });
  add(s421("Samba_421M_abl_mamba"), [](Official& o) { o.mb_per_layer = 2, o.abl_mamba = o.mamba_init = true; });
  add(s421("Mamba_SWA_MLP_400M"), [](Official& o) { o.n_layer = 8, o.mamba_swa_mlp = o.mamba_init = true; });
  const std::pair<const char*, std::vector<int64_t>> full[] = {{"LLaMA_449M_full_mamba_0", {0}},
                                                              {"LLaMA_449M_full_mamba_11", {11}},
                                                              {"LLaMA_449M_full_mamba_5", {5}},
                                                              {"LLaMA_443M_full_mamba_1,5", {1, 5}}};
  for (const auto& entry : full) {
    const std::vector<int64_t> pos = entry.second;
    add(s421(entry.first), [&](Official& o) { o.local_window = -1, o.mamba_init = true, o.attn_layer_pos = pos; });
  }
  const std::pair<const char*, int64_t> kv[] = {{"Samba_421M_mqa", 1}, {"Samba_421M_gqa4", 4}, {"Samba_421M_gqa2", 2}};
  for (const auto& entry : kv) {
    const int64_t groups = entry.second;
    add(s421(entry.first), [&](Official& o) {
      o.mb_per_layer = 2, o.mamba_init = true, o.intermediate_size = 4608, o.n_query_groups = groups;
    });
  }
  add(s421("Samba_421M_mqa6"), [](Official& o) {
    o.mb_per_layer = 2, o.mamba_init = true, o.n_head = 6, o.intermediate_size = 4608, o.n_query_groups = 1;
  });
  add(s421("LLaMA_438M_SWA_gla"), [](Official& o) { o.gla_per_layer = 2; });
  add(s421("LLaMA_446M_SWA_ret"), [](Official& o) { o.ret_per_layer = 2, o.mamba_init = true; });
  add(s421("Samba_421M_1k_window"), [](Official& o) { o.mb_per_layer = 2, o.mamba_init = true, o.local_window = 1024; });
  add(s421("Samba_421M_512_window"), [](Official& o) { o.mb_per_layer = 2, o.mamba_init = true, o.local_window = 512; });
  add(s13("Samba_1.3B"), [](Official& o) { o.mb_per_layer = 2; });
  add(s13("Mamba_SWA_MLP_1.3B"), [](Official& o) { o.n_layer = 12, o.mamba_swa_mlp = true; });
  add(s13("S6Mega_1.3B"), [](Official& o) { o.use_mega = true; });
  add(s13("LLaMA_1.2B_SWA_gla"), [](Official& o) { o.gla_per_layer = 2; });
  add(s13("LLaMA_1.4B_SWA_ret"), [](Official& o) { o.ret_per_layer = 2; });
  add(s13("LLaMA_1.3B_SWA"), [](Official& o) { o.n_layer = 20; });
  add(s13("LLaMA_1.3B"), [](Official& o) { o.n_layer = 20, o.local_window = -1; });
  // The Mamba configs keep the dataclass default padding_multiple 512 (32000 -> 32256).
  for (auto [name, layers, d] : {std::tuple<const char*, int64_t, int64_t>{"Mamba_430M", 60, 1024},
                                 std::tuple<const char*, int64_t, int64_t>{"Mamba_1.3B", 48, 2048}})
    add(Official{name, layers, 32, d, 0}, [](Official& o) { o.mamba = true, o.padding_multiple = 512; });
  return t;
}

// Configs without an official counterpart (paper-only sizes, our own ablation switches).
bool paper_only(const std::string& name) { return name == "samba-1.7b" || name == "samba-3.8b" || name == "samba-421m-sc"; }

}  // namespace

TEST(Zoo, EveryConfigEqualsItsOfficialCountExactly) {
  const auto table = official_table();
  int checked = 0;
  for (const auto& path : zoo(false)) {
    samba::ModelConfig cfg = samba::load_model_config(path.string());
    SCOPED_TRACE(cfg.name);
    if (paper_only(cfg.name)) {
      EXPECT_TRUE(cfg.official_name.empty());
      continue;
    }
    auto it = std::find_if(table.begin(), table.end(), [&](const Official& o) { return cfg.official_name == o.name; });
    ASSERT_NE(it, table.end()) << "official_name '" << cfg.official_name << "' is not in lit_gpt/config.py's table";
    const Official& o = *it;
    const int64_t official = official_params(o, 32000);
    EXPECT_EQ(cfg.official_params, official) << "the figure inspect prints";
    EXPECT_EQ(samba::summarize(cfg).total_params, official);
    // The fields that decide training, not only the count.
    EXPECT_EQ(cfg.layers, official_pattern(o));
    EXPECT_EQ(cfg.tie_embeddings, o.mamba || o.mamba_init);
    EXPECT_EQ(cfg.init, o.mamba || o.mamba_init ? samba::InitScheme::Mamba : samba::InitScheme::TinyLlama);
    EXPECT_EQ(cfg.seq_len, o.block_size);
    EXPECT_EQ(cfg.d_model, o.n_embd);
    if (cfg.has('*')) EXPECT_EQ(cfg.attention.window, o.local_window);
    if (!o.mamba) {
      EXPECT_EQ(cfg.attention.n_heads, o.n_head);
      EXPECT_EQ(cfg.attn_kv_heads(), o.n_query_groups > 0 ? o.n_query_groups : o.n_head);
    }
    EXPECT_EQ(cfg.attention.rope, !o.nope);
    std::printf("  %-24s %14lld  official %-26s equal\n", cfg.name.c_str(),
                static_cast<long long>(samba::summarize(cfg).total_params), o.name);
    ++checked;
  }
  EXPECT_GE(checked, 34);
}

TEST(Zoo, PaperSizesMatchThePaper) {
  int checked = 0;
  for (const auto& path : zoo(false)) {
    samba::ModelConfig cfg = samba::load_model_config(path.string());
    auto s = samba::summarize(cfg);
    if (cfg.paper_params <= 0) continue;
    const double dev = std::abs(static_cast<double>(s.total_params) - cfg.paper_params) / cfg.paper_params;
    const double limit = cfg.name == "samba-421m" ? 0.02 : 0.03;
    EXPECT_LT(dev, limit) << cfg.name << ": " << s.total_params << " vs paper " << cfg.paper_params;
    std::printf("  %-26s %14lld  paper %6.0fM  %+.2f%%\n", cfg.name.c_str(), static_cast<long long>(s.total_params),
                cfg.paper_params / 1e6, 100.0 * (static_cast<double>(s.total_params) - cfg.paper_params) / cfg.paper_params);
    ++checked;
  }
  EXPECT_GE(checked, 12);
}

TEST(Zoo, TinyModelsBuildCountAndTrainOneStep) {
  int built = 0;
  for (const auto& path : zoo(true)) {
    SCOPED_TRACE(path.string());
    samba::ModelConfig cfg = samba::load_model_config(path.string());
    EXPECT_GE(cfg.d_model, 64);
    EXPECT_LE(cfg.d_model, 128);
    torch::manual_seed(0);
    samba::LanguageModel model(cfg);
    int64_t real = 0;
    for (const auto& p : model->parameters()) real += p.numel();
    EXPECT_EQ(real, samba::summarize(cfg).total_params) << cfg.name;

    auto tokens = torch::randint(cfg.vocab_size, {2, 33}, torch::kLong);
    auto loss = model->loss(tokens.slice(1, 0, 32), tokens.slice(1, 1, 33));
    ASSERT_TRUE(std::isfinite(loss.item<double>())) << cfg.name;
    // An untrained model predicts roughly uniformly.
    EXPECT_NEAR(loss.item<double>(), std::log(static_cast<double>(cfg.vocab_size)), 1.0) << cfg.name;
    loss.backward();
    for (const auto& p : model->named_parameters()) {
      ASSERT_TRUE(p.value().grad().defined()) << cfg.name << " " << p.key();
      EXPECT_TRUE(torch::isfinite(p.value().grad()).all().item<bool>()) << cfg.name << " " << p.key();
    }
    ++built;
  }
  EXPECT_GE(built, 10);
}

TEST(Zoo, CanonicalParameterNames) {
  samba::ModelConfig cfg = samba::load_model_config(std::string(SAMBA_SOURCE_DIR) + "/configs/models/tiny-llama2.yaml");
  samba::LanguageModel model(cfg);
  auto params = model->named_parameters();
  EXPECT_TRUE(params.contains("embed.weight"));
  EXPECT_TRUE(params.contains("layers.0.norm.weight"));
  EXPECT_TRUE(params.contains("layers.1.mixer.down.weight"));
  EXPECT_TRUE(params.contains("norm_f.weight"));
  EXPECT_TRUE(params.contains("lm_head.weight"));  // tiny-llama2 is untied
  samba::ModelConfig tied = samba::load_model_config(std::string(SAMBA_SOURCE_DIR) + "/configs/models/tiny-samba.yaml");
  samba::LanguageModel m2(tied);
  EXPECT_FALSE(m2->named_parameters().contains("lm_head.weight"));
}
