// Strict YAML model configs: valid files resolve as documented; each kind of malformed file
// gets its own specific error (file, line, key, what is allowed) and nothing crashes.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "samba/core/config.h"
#include "samba/core/error.h"
#include "base/io_test_util.h"

namespace fs = std::filesystem;
using samba::ModelConfig;

namespace {

const char* kValid = R"(
name: t
vocab_size: 100
d_model: 64
pattern: "M-*-"
repeat: 2
mlp_hidden: 128
seq_len: 64
attention: {n_heads: 4, window: 32}
)";

ModelConfig parse(const std::string& text) { return samba::parse_model_config(text, "test.yaml"); }

// Returns the error message, failing the test if parsing succeeds.
std::string error_of(const std::string& text) {
  try {
    parse(text);
  } catch (const samba::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an error for:\n" << text;
  return "";
}

}  // namespace

TEST(Config, ValidResolves) {
  ModelConfig c = parse(kValid);
  EXPECT_EQ(c.layers, "M-*-M-*-");
  EXPECT_EQ(c.n_layers(), 8);
  EXPECT_EQ(c.blocks(), 4);
  EXPECT_EQ(c.attn_head_dim(), 16);
  EXPECT_EQ(c.attn_kv_heads(), 4);
  EXPECT_EQ(c.mamba_dt_rank(), 4);  // ceil(64 / 16)
  EXPECT_EQ(c.mlp2_hidden_size(), 128);
}

TEST(Config, ExplicitLayerListAcceptsNamesAndChars) {
  ModelConfig c = parse(R"(
d_model: 64
mlp_hidden: 128
seq_len: 64
layers: [mamba, "-", swa, mlp, A, "-"]
attention: {n_heads: 4, window: 16}
)");
  EXPECT_EQ(c.layers, "M-*-A-");
}

TEST(Config, RopeBaseNoneMeansNoPE) {
  ModelConfig c = parse(std::string(kValid) + "\n" + "mamba: {dt_rank: auto}\n");
  EXPECT_TRUE(c.attention.rope);
  ModelConfig n = parse(R"(
d_model: 64
pattern: "*-"
mlp_hidden: 128
seq_len: 64
attention: {n_heads: 4, window: 32, rope_base: none}
)");
  EXPECT_FALSE(n.attention.rope);
}

TEST(Config, ResolvedYamlRoundTrips) {
  ModelConfig c = parse(kValid);
  ModelConfig again = parse(samba::to_yaml(c));
  EXPECT_EQ(again.layers, c.layers);
  EXPECT_EQ(samba::to_yaml(again), samba::to_yaml(c));
}

TEST(Config, IncludeAppliesBaseThenOverrides) {
  samba::testing::TempDir tmp;
  const fs::path& d = tmp.path();
  std::ofstream(d / "base.yaml") << kValid;
  std::ofstream(d / "child.yaml") << "include: base.yaml\nname: child\nd_model: 128\nattention: {n_kv_heads: 2}\n";
  ModelConfig c = samba::load_model_config((d / "child.yaml").string());
  EXPECT_EQ(c.name, "child");
  EXPECT_EQ(c.d_model, 128);
  EXPECT_EQ(c.attention.n_heads, 4);  // from the base
  EXPECT_EQ(c.attn_kv_heads(), 2);    // overridden
  EXPECT_EQ(c.layers, "M-*-M-*-");
}

struct Malformed {
  const char* what;
  std::string yaml;
  std::vector<std::string> expect;  // substrings the message must contain
};

class MalformedConfig : public ::testing::TestWithParam<Malformed> {};

TEST_P(MalformedConfig, GivesItsOwnSpecificError) {
  const Malformed& m = GetParam();
  std::string msg = error_of(m.yaml);
  for (const auto& s : m.expect) EXPECT_NE(msg.find(s), std::string::npos) << m.what << ": '" << s << "' not in: " << msg;
  EXPECT_NE(msg.find("test.yaml"), std::string::npos) << "message must name the file: " << msg;
}

std::string with(const std::string& extra) { return std::string(kValid) + extra; }
std::string replace(std::string s, const std::string& from, const std::string& to) {
  return s.replace(s.find(from), from.size(), to);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, MalformedConfig,
    ::testing::Values(
        Malformed{"unknown top-level key", with("d_modle: 3\n"), {"d_modle", "unknown key", "d_model"}},
        Malformed{"unknown nested key", with("mamba: {d_stat: 3}\n"), {"mamba.d_stat", "d_state"}},
        Malformed{"wrong type", replace(kValid, "d_model: 64", "d_model: wide"), {"d_model", "integer"}},
        Malformed{"float for int", replace(kValid, "repeat: 2", "repeat: 2.5"), {"repeat", "integer"}},
        Malformed{"heads do not divide d_model", replace(kValid, "n_heads: 4", "n_heads: 5"),
                  {"attention.n_heads", "must divide d_model"}},
        Malformed{"kv heads do not divide heads", replace(kValid, "n_heads: 4", "n_heads: 4, n_kv_heads: 3"),
                  {"n_kv_heads", "must divide n_heads"}},
        Malformed{"unknown pattern char", replace(kValid, "M-*-", "M-X-"), {"pattern", "'X'", "allowed"}},
        Malformed{"window zero", replace(kValid, "window: 32", "window: 0"), {"window", ">= 1"}},
        Malformed{"window longer than sequence", replace(kValid, "window: 32", "window: 128"),
                  {"attention.window", "exceeds seq_len"}},
        Malformed{"missing mlp_hidden", replace(kValid, "mlp_hidden: 128", ""), {"mlp_hidden", "required"}},
        Malformed{"missing d_model", replace(kValid, "d_model: 64", ""), {"d_model", "required"}},
        Malformed{"negative value", replace(kValid, "vocab_size: 100", "vocab_size: -5"), {"vocab_size", ">= 2"}},
        Malformed{"bad init choice", with("init: xavier\n"), {"init", "mamba", "tinyllama"}},
        Malformed{"bad bool", with("tie_embeddings: maybe\n"), {"tie_embeddings", "true or false"}},
        Malformed{"pattern and layers", with("layers: [M]\n"), {"layers", "not both"}},
        Malformed{"unknown layer name", replace(kValid, "pattern: \"M-*-\"", "layers: [mamba, lstm]"),
                  {"layers", "lstm"}},
        Malformed{"odd head dim with rope", replace(kValid, "n_heads: 4", "n_heads: 4, head_dim: 15"),
                  {"head_dim", "even"}},
        Malformed{"yaml syntax error", "d_model: [64\n", {"test.yaml"}},
        Malformed{"top level not a map", "- a\n- b\n", {"map"}},
        Malformed{"section not a map", with("attention_extra: 1\n"), {"attention_extra"}},
        Malformed{"dt_min above dt_max", with("mamba: {dt_min: 0.5, dt_max: 0.1}\n"), {"dt_min", "dt_max"}},
        Malformed{"empty pattern", replace(kValid, "\"M-*-\"", "\"\""), {"pattern", "empty"}},
        Malformed{"include missing file", with("include: nope.yaml\n"), {"include", "does not exist"}}));

TEST(Config, LineNumbersPointAtTheKey) {
  std::string msg = error_of("name: x\nd_model: 64\nbogus_key: 1\n");
  EXPECT_NE(msg.find(":3:"), std::string::npos) << msg;
}
