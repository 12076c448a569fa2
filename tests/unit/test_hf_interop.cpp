// Hugging Face interop (hf_interop.h) and export checksums: --format hf writes the names and
// config keys of transformers' Llama / Mistral / Mamba and FLA's Samba (the FLA schema as
// listed in docs/FORMATS.md); importing an HF directory gives back the same logits; a damaged
// export is named, not evaluated. (Loading in transformers itself: scripts/gpu/check_hf_exports.sh.)
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "base/io_test_util.h"
#include "samba/ckpt/checkpoint.h"
#include "samba/ckpt/export.h"
#include "samba/ckpt/hf_interop.h"
#include "samba/core/error.h"
#include "samba/io/safetensors.h"
#include "samba/model/model.h"

namespace fs = std::filesystem;
using namespace samba::ckpt;
using samba::testing::error_of;
using samba::testing::slurp;
using samba::testing::spit;
using samba::testing::TempDir;

namespace {

const char* kLlama =
    "name: hf-llama\nvocab_size: 97\nd_model: 64\npattern: \"A-\"\nrepeat: 2\nmlp_hidden: 96\ninit: tinyllama\n"
    "tie_embeddings: false\nseq_len: 32\nattention: {n_heads: 4, n_kv_heads: 2, rope_base: 5000}\n";
const char* kMistral =
    "name: hf-mistral\nvocab_size: 97\nd_model: 64\npattern: \"*-\"\nrepeat: 2\nmlp_hidden: 96\ninit: tinyllama\n"
    "tie_embeddings: false\nseq_len: 32\nattention: {n_heads: 4, n_kv_heads: 1, window: 8}\n";
const char* kMamba = "name: hf-mamba\nvocab_size: 97\nd_model: 64\npattern: \"M\"\nrepeat: 3\nseq_len: 32\n";
const char* kFlaSamba =
    "name: hf-samba\nvocab_size: 97\nd_model: 128\npattern: \"M-*-\"\nrepeat: 1\nmlp_hidden: 256\nseq_len: 32\n"
    "attention: {n_heads: 4, window: 8}\n";

std::string write_yaml(const TempDir& tmp, const std::string& name, const std::string& text) {
  const auto path = tmp.file(name + ".yaml");
  spit(path, text);
  return path;
}

std::string replaced(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return text.replace(at, from.size(), to);
}

ExportOptions hf_options() {
  ExportOptions o;
  o.format = "hf";
  return o;
}

// The model export_initialised builds for (yaml, seed).
samba::LanguageModel reference(const std::string& yaml, uint64_t seed) {
  torch::manual_seed(seed);
  return samba::LanguageModel(samba::load_model_config(yaml));
}

torch::Tensor logits(samba::LanguageModel& m, const torch::Tensor& tokens) {
  torch::NoGradGuard g;
  return m->forward(tokens);
}

std::set<std::string> names_in(const std::string& file) {
  samba::io::SafetensorsFile f(file);
  return {f.names().begin(), f.names().end()};
}

// Flips one bit at `offset` of `path`.
void flip_byte(const std::string& path, size_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x10);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

// Each family: export in its layout, load it back (as an HF directory), same logits bitwise.
void expect_round_trip(const TempDir& tmp, const char* yaml_text, const std::string& name, hf::Family family,
                       const std::string& model_type) {
  SCOPED_TRACE(name);
  const auto yaml = write_yaml(tmp, name, yaml_text);
  const auto out = tmp.file(name + "-hf");
  export_initialised(yaml, 7, out, hf_options());
  auto j = nlohmann::json::parse(slurp(out + "/config.json"));
  EXPECT_EQ(j["model_type"], model_type);
  EXPECT_FALSE(fs::exists(out + "/model.yaml")) << "an HF directory must not look like our export";
  auto want = reference(yaml, 7);
  EXPECT_EQ(hf::family_of(want->config()), family);
  LoadedModel loaded = load_model(out);
  auto tokens = torch::randint(0, 97, {2, 20}, torch::kLong);
  EXPECT_TRUE(torch::equal(logits(loaded.model, tokens), logits(want, tokens)));
}

}  // namespace

TEST(HfExport, LlamaMistralMambaRoundTripWithIdenticalLogits) {
  TempDir tmp;
  expect_round_trip(tmp, kLlama, "llama", hf::Family::Llama, "llama");
  expect_round_trip(tmp, kMistral, "mistral", hf::Family::Mistral, "mistral");
  expect_round_trip(tmp, kMamba, "mamba", hf::Family::Mamba, "mamba");
}

TEST(HfExport, LlamaNamesAndConfigAreTransformers) {
  TempDir tmp;
  const auto out = tmp.file("llama-hf");
  export_initialised(write_yaml(tmp, "llama", kLlama), 1, out, hf_options());
  const std::set<std::string> want = {
      "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
      "model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight",
      "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
      "model.layers.0.self_attn.v_proj.weight", "model.layers.0.self_attn.o_proj.weight",
      "model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight",
      "model.layers.1.input_layernorm.weight", "model.layers.1.post_attention_layernorm.weight",
      "model.layers.1.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight",
      "model.layers.1.self_attn.v_proj.weight", "model.layers.1.self_attn.o_proj.weight",
      "model.layers.1.mlp.gate_proj.weight", "model.layers.1.mlp.up_proj.weight", "model.layers.1.mlp.down_proj.weight"};
  EXPECT_EQ(names_in(out + "/model.safetensors"), want);
  auto j = nlohmann::json::parse(slurp(out + "/config.json"));
  EXPECT_EQ(j["architectures"], nlohmann::json::array({"LlamaForCausalLM"}));
  EXPECT_EQ(j["num_hidden_layers"], 2);  // blocks, not sublayers
  EXPECT_EQ(j["num_attention_heads"], 4);
  EXPECT_EQ(j["num_key_value_heads"], 2);
  EXPECT_EQ(j["head_dim"], 16);
  EXPECT_EQ(j["intermediate_size"], 96);
  EXPECT_EQ(j["hidden_act"], "silu");
  EXPECT_DOUBLE_EQ(j["rope_theta"].get<double>(), 5000.0);
  EXPECT_EQ(j["tie_word_embeddings"], false);
  samba::io::SafetensorsFile f(out + "/model.safetensors");
  EXPECT_EQ(f.info("model.layers.0.self_attn.k_proj.weight").shape, (std::vector<int64_t>{32, 64}));
}

TEST(HfExport, MambaNamesAndConfigAreTransformers) {
  TempDir tmp;
  const auto out = tmp.file("mamba-hf");
  export_initialised(write_yaml(tmp, "mamba", kMamba), 1, out, hf_options());
  const auto names = names_in(out + "/model.safetensors");
  for (const char* n : {"backbone.embeddings.weight", "backbone.norm_f.weight", "backbone.layers.2.norm.weight",
                        "backbone.layers.2.mixer.in_proj.weight", "backbone.layers.2.mixer.conv1d.weight",
                        "backbone.layers.2.mixer.conv1d.bias", "backbone.layers.2.mixer.x_proj.weight",
                        "backbone.layers.2.mixer.dt_proj.weight", "backbone.layers.2.mixer.dt_proj.bias",
                        "backbone.layers.2.mixer.A_log", "backbone.layers.2.mixer.D", "backbone.layers.2.mixer.out_proj.weight"})
    EXPECT_TRUE(names.count(n)) << n;
  EXPECT_FALSE(names.count("lm_head.weight")) << "tied: transformers ties lm_head to the embedding";
  EXPECT_EQ(names.size(), 2u + 3u * 10u);
  auto j = nlohmann::json::parse(slurp(out + "/config.json"));
  EXPECT_EQ(j["architectures"], nlohmann::json::array({"MambaForCausalLM"}));
  EXPECT_EQ(j["num_hidden_layers"], 3);
  EXPECT_EQ(j["time_step_rank"], 4);
  EXPECT_EQ(j["intermediate_size"], 128);
  EXPECT_EQ(j["state_size"], 16);
  EXPECT_EQ(j["conv_kernel"], 4);
  EXPECT_EQ(j["tie_word_embeddings"], true);
}

// docs/FORMATS.md lists FLA's SambaForCausalLM config keys and tensor names; the export must
// write exactly those (block indices written as <j>).
TEST(HfExport, FlaSambaFollowsTheSchemaInFormatsMd) {
  const std::string doc = slurp(std::string(SAMBA_SOURCE_DIR) + "/docs/FORMATS.md");
  auto listed = [&](const std::string& marker) {
    const size_t at = doc.find(marker);
    EXPECT_NE(at, std::string::npos) << marker;
    const std::string line = doc.substr(at + marker.size(), doc.find('\n', at) - at - marker.size());
    std::set<std::string> out;
    std::regex item("`([^`]+)`");
    for (std::sregex_iterator it(line.begin(), line.end(), item), end; it != end; ++it) out.insert((*it)[1]);
    return out;
  };
  const auto doc_keys = listed("FLA Samba config.json keys:");
  const auto doc_names = listed("FLA Samba tensor names:");
  ASSERT_GE(doc_keys.size(), 10u);
  ASSERT_GE(doc_names.size(), 15u);

  TempDir tmp;
  const auto out = tmp.file("samba-hf");
  export_initialised(write_yaml(tmp, "samba", kFlaSamba), 1, out, hf_options());
  auto j = nlohmann::json::parse(slurp(out + "/config.json"));
  std::set<std::string> keys;
  for (auto e = j.begin(); e != j.end(); ++e) keys.insert(e.key());
  EXPECT_EQ(keys, doc_keys);
  EXPECT_EQ(j["architectures"], nlohmann::json::array({"SambaForCausalLM"}));
  EXPECT_EQ(j["model_type"], "samba");
  EXPECT_EQ(j["num_hidden_layers"], 2);
  EXPECT_EQ(j["attn"]["layers"], nlohmann::json::array({1}));
  EXPECT_EQ(j["attn"]["window_size"], 8);
  EXPECT_DOUBLE_EQ(j["hidden_ratio"].get<double>(), 3.0);  // FLA: 256 * ceil(int(128 * 3 * 2/3) / 256) = 256

  std::set<std::string> names;
  const std::regex block("^backbone\\.layers\\.[0-9]+\\.");
  for (const auto& n : names_in(out + "/model.safetensors")) names.insert(std::regex_replace(n, block, "backbone.layers.<j>."));
  EXPECT_EQ(names, doc_names);
}

TEST(HfExport, PatternsWithoutAClassAreRefusedWithTheReason) {
  TempDir tmp;
  auto msg = error_of([&] {
    export_initialised(write_yaml(tmp, "gla", "d_model: 64\npattern: \"G-*-\"\nmlp_hidden: 256\nseq_len: 32\n"
                                              "attention: {n_heads: 4, window: 8}\ngla: {n_heads: 2}\n"),
                       1, tmp.file("gla-hf"), hf_options());
  });
  EXPECT_NE(msg.find("no Hugging Face class"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--format samba"), std::string::npos) << msg;
  msg = error_of([&] {
    export_initialised(write_yaml(tmp, "nope", replaced(kLlama, "rope_base: 5000", "rope: false")), 1,
                       tmp.file("nope-hf"), hf_options());
  });
  EXPECT_NE(msg.find("NoPE"), std::string::npos) << msg;
  msg = error_of([&] {
    export_initialised(write_yaml(tmp, "mlp384", replaced(kFlaSamba, "mlp_hidden: 256", "mlp_hidden: 384")), 1,
                       tmp.file("mlp-hf"), hf_options());
  });
  EXPECT_NE(msg.find("multiple of 256"), std::string::npos) << msg;
  for (const char* dir : {"gla-hf", "nope-hf", "mlp-hf"}) EXPECT_FALSE(fs::exists(tmp.file(dir))) << dir;
}

// An HF Llama directory written by hand (names spelled out here, not by hf_interop, and a
// transformers-5 style rope_parameters) imports to the model whose tensors those are.
TEST(HfImport, HandWrittenLlamaDirectoryGivesTheSameLogits) {
  TempDir tmp;
  auto cfg = samba::parse_model_config(kLlama, "llama.yaml");
  torch::manual_seed(3);
  samba::LanguageModel want(cfg);
  NamedTensors hf_tensors;
  for (auto& [ours, t] : module_state(*want)) {
    std::smatch m;
    std::string theirs;
    if (ours == "embed.weight") theirs = "model.embed_tokens.weight";
    else if (ours == "norm_f.weight") theirs = "model.norm.weight";
    else if (ours == "lm_head.weight") theirs = "lm_head.weight";
    else if (std::regex_match(ours, m, std::regex("layers\\.([0-9]+)\\.(.*)"))) {
      const int i = std::stoi(m[1]);
      const std::string rest = m[2], p = "model.layers." + std::to_string(i / 2) + ".";
      if (rest == "norm.weight") theirs = p + (i % 2 == 0 ? "input_layernorm.weight" : "post_attention_layernorm.weight");
      else if (i % 2 == 0) theirs = p + "self_attn." + rest.substr(6);
      else theirs = p + "mlp." + rest.substr(6, rest.size() - 13) + "_proj.weight";
    }
    ASSERT_FALSE(theirs.empty()) << ours;
    hf_tensors.emplace_back(theirs, t.detach().to(torch::kBFloat16).to(torch::kFloat32));
  }
  const auto dir = tmp.file("hf-llama");
  fs::create_directories(dir);
  save_tensors(dir + "/model.safetensors", hf_tensors, {{"format", "pt"}});
  spit(dir + "/config.json", R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 97,
    "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "hidden_act": "silu", "max_position_embeddings": 32, "rms_norm_eps": 1e-05,
    "rope_parameters": {"rope_type": "default", "rope_theta": 5000.0}, "tie_word_embeddings": false})");
  spit(dir + "/tokenizer.model", "spm bytes");
  const auto out = tmp.file("imported");
  ExportOptions o;
  o.logits_tokens = {1, 5, 9, 2};
  import_hf(dir, out, o);
  LoadedModel loaded = load_model(out);
  EXPECT_EQ(loaded.config.layers, "A-A-");
  EXPECT_EQ(slurp(loaded.tokenizer_path), "spm bytes");
  EXPECT_DOUBLE_EQ(loaded.config.attention.rope_base, 5000.0);
  {  // the weights are the bf16-rounded ones written above
    torch::NoGradGuard g;
    for (auto& p : want->parameters()) p.copy_(p.to(torch::kBFloat16).to(torch::kFloat32));
  }
  auto tokens = torch::randint(0, 97, {2, 16}, torch::kLong);
  EXPECT_TRUE(torch::equal(logits(loaded.model, tokens), logits(want, tokens)));
  // logits.safetensors holds our logits on the asked tokens.
  auto ref = load_tensors(out + "/logits.safetensors");
  EXPECT_TRUE(torch::equal(ref.at("input_ids"), torch::tensor(std::vector<int64_t>{1, 5, 9, 2}).unsqueeze(0)));
  EXPECT_TRUE(torch::equal(ref.at("logits"), logits(want, ref.at("input_ids"))));

  // Scaled RoPE has no equivalent: refused, naming it.
  spit(dir + "/config.json", R"({"model_type": "llama", "vocab_size": 97, "hidden_size": 64, "intermediate_size": 96,
    "num_hidden_layers": 2, "num_attention_heads": 4, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}})");
  auto msg = error_of([&] { import_hf(dir, tmp.file("scaled"), {}); });
  EXPECT_NE(msg.find("llama3"), std::string::npos) << msg;
  spit(dir + "/config.json", R"({"model_type": "llama", "vocab_size": 97, "hidden_size": 64, "intermediate_size": 96,
    "num_hidden_layers": 2, "num_attention_heads": 4})");
  fs::remove(dir + "/model.safetensors");
  spit(dir + "/pytorch_model.bin", "pickle");
  msg = error_of([&] { import_hf(dir, tmp.file("bin"), {}); });
  EXPECT_NE(msg.find("safe_serialization"), std::string::npos) << msg;
}

// Issue 12: exports carry CRC32C checksums of every tensor and sibling file, verified on load.
TEST(ExportChecksums, DamagedTensorOrFileIsNamedNotEvaluated) {
  TempDir tmp;
  const auto yaml = write_yaml(tmp, "llama", kLlama);
  const auto tok = tmp.file("tok.model");
  spit(tok, "tokenizer bytes");
  const auto out = tmp.file("export");
  ExportOptions o;
  o.tokenizer_path = tok;
  export_initialised(yaml, 2, out, o);
  EXPECT_NO_THROW(load_model(out));

  const auto weights = out + "/model.safetensors";
  const std::string pristine = slurp(weights);
  size_t offset = 0;
  std::string victim;
  {
    samba::io::SafetensorsFile f(weights);
    victim = "layers.1.mixer.down.weight";
    offset = f.data_start() + f.info(victim).offset + 5;
  }
  flip_byte(weights, offset);
  auto msg = error_of([&] { load_model(out); });
  EXPECT_NE(msg.find("damaged"), std::string::npos) << msg;
  EXPECT_NE(msg.find(victim), std::string::npos) << msg;
  spit(weights, pristine);

  for (const char* sibling : {"model.yaml", "tokenizer.model", "config.json"}) {
    const auto path = out + "/" + sibling;
    const std::string good = slurp(path);
    flip_byte(path, good.size() / 2);
    msg = error_of([&] { load_model(out); });
    EXPECT_NE(msg.find(sibling), std::string::npos) << msg;
    EXPECT_NE(msg.find("damaged"), std::string::npos) << msg;
    spit(path, good);
  }
  EXPECT_NO_THROW(load_model(out));

  // A file without our table (another tool, an older samba) still loads.
  auto tensors = load_tensors(weights);
  NamedTensors plain(tensors.begin(), tensors.end());
  save_tensors(weights, plain, {{"format", "pt"}});
  EXPECT_NO_THROW(load_model(out));
}
