// A generated corpus of malformed inputs driven through the `samba` binary: mutations of the
// zoo's model configs (`samba inspect`) and of the training recipe (`samba train`) -- wrong
// types, out-of-range, huge and non-finite numbers, duplicated, missing and unknown keys,
// empty, binary and directory files -- and bad command-line flags. Every case must exit with
// a status in 1..127 (no signal, no acceptance) and name the offending key or flag. Recipes
// must be refused at config validation: before the run directory is created.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "base/io_test_util.h"

namespace fs = std::filesystem;
using samba::testing::TempDir;

extern char** environ;

namespace {

struct Case {
  std::string name;               // for failure messages
  std::vector<std::string> args;  // after the binary
  std::string expect;             // substring the output must contain (the key or flag)
  std::string must_not_exist;     // a path the command must not create (recipes: run_dir)
};

struct Outcome {
  bool signaled = false;
  int code = 0;  // exit status, or the signal number when signaled
  std::string output;
};

std::string samba_bin() {
  const char* b = std::getenv("SAMBA_BIN");
  return b ? b : "";
}

// Runs the cases two at a time (the CPU machine has two cores); output goes to one file each.
std::vector<Outcome> run_all(const std::vector<Case>& cases, const fs::path& scratch) {
  std::vector<Outcome> out(cases.size());
  std::vector<std::pair<pid_t, size_t>> running;
  auto reap_one = [&] {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    for (size_t k = 0; k < running.size(); ++k) {
      if (running[k].first != pid) continue;
      const size_t i = running[k].second;
      out[i].signaled = WIFSIGNALED(status);
      out[i].code = WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status);
      out[i].output = samba::testing::slurp((scratch / ("out_" + std::to_string(i))).string());
      running.erase(running.begin() + static_cast<long>(k));
      return;
    }
  };
  const std::string bin = samba_bin();
  for (size_t i = 0; i < cases.size(); ++i) {
    if (running.size() >= 2) reap_one();
    std::vector<std::string> argv_s = {bin};
    argv_s.insert(argv_s.end(), cases[i].args.begin(), cases[i].args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string log = (scratch / ("out_" + std::to_string(i))).string();
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid = 0;
    const int rc = ::posix_spawn(&pid, bin.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      ADD_FAILURE() << "cannot start " << bin;
      out[i].code = -1;
      continue;
    }
    running.emplace_back(pid, i);
  }
  while (!running.empty()) reap_one();
  return out;
}

void check_outcomes(const std::vector<Case>& cases, const std::vector<Outcome>& outcomes) {
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const Outcome& o = outcomes[i];
    const std::string what = c.name + " (samba " + [&] {
      std::string s;
      for (const auto& a : c.args) s += (s.empty() ? "" : " ") + a;
      return s;
    }() + ")";
    if (o.signaled) {
      ADD_FAILURE() << what << ": crashed with signal " << o.code << "\n" << o.output;
      continue;
    }
    EXPECT_TRUE(o.code >= 1 && o.code <= 127) << what << ": exit " << o.code << " -- accepted?\n" << o.output;
    EXPECT_NE(o.output.find(c.expect), std::string::npos)
        << what << ": the message does not name '" << c.expect << "':\n" << o.output;
    EXPECT_EQ(o.output.find("internal error"), std::string::npos) << what << ": " << o.output;
    if (!c.must_not_exist.empty())
      EXPECT_FALSE(fs::exists(c.must_not_exist))
          << what << ": created " << c.must_not_exist << ", so it got past config validation:\n" << o.output;
  }
}

std::string dump(const YAML::Node& n) {
  YAML::Emitter e;
  e << n;
  return std::string(e.c_str()) + "\n";
}

// Leaf keys of a config as dotted paths ("d_model", "attention.window"), top two levels.
std::vector<std::string> leaf_keys(const YAML::Node& root) {
  std::vector<std::string> keys;
  for (const auto& kv : root) {
    const std::string k = kv.first.Scalar();
    if (kv.second.IsMap()) {
      for (const auto& inner : kv.second) keys.push_back(k + "." + inner.first.Scalar());
    } else if (kv.second.IsScalar()) {
      keys.push_back(k);
    }
  }
  return keys;
}

YAML::Node with_value(const YAML::Node& root, const std::string& dotted, const std::string& yaml_value) {
  YAML::Node copy = YAML::Clone(root);
  const size_t dot = dotted.find('.');
  YAML::Node v = YAML::Load(yaml_value);
  if (dot == std::string::npos) copy[dotted] = v;
  else copy[dotted.substr(0, dot)][dotted.substr(dot + 1)] = v;
  return copy;
}

YAML::Node without(const YAML::Node& root, const std::string& key) {
  YAML::Node copy = YAML::Clone(root);
  copy.remove(key);
  return copy;
}

bool is_number(const std::string& s) {
  char* end = nullptr;
  std::strtod(s.c_str(), &end);
  return !s.empty() && end == s.c_str() + s.size();
}

// Values that no numeric config key accepts, each naming the failure it provokes.
const std::vector<std::pair<std::string, std::string>> kBadNumbers = {
    {"wrong type", "wide"},          {"negative", "-1"},       {"does not fit int64", "99999999999999999999"},
    {"infinite", ".inf"},            {"not a number", ".nan"}, {"overflowing double", "1e400"},
    {"list instead of number", "[1, 2]"},
};

// Floating-point keys: a huge but finite value (1e20) can be legitimate for them, so they get
// only the mutations that are invalid for every number.
bool is_float_key(const std::string& key) {
  for (const char* k : {"attention.rope_base", "paper_params", "norm_eps", "init_std", "optimizer.lr", "optimizer.min_lr",
                        "optimizer.beta1", "optimizer.beta2", "optimizer.eps", "optimizer.weight_decay",
                        "optimizer.warmup_fraction", "optimizer.grad_clip", "peak_tflops"})
    if (key == k) return true;
  return key.rfind("mamba.dt_", 0) == 0 && key != "mamba.dt_rank";
}

// Each process start costs a second or more on a loaded 2-core machine, so instead of every
// bad number for every key, each numeric key gets two, rotating through the list so that all
// kinds are covered across the keys (`k` counts the numeric keys seen).
std::vector<std::pair<std::string, std::string>> bad_numbers_for(const std::string& key, size_t k) {
  std::vector<std::pair<std::string, std::string>> out;
  for (size_t pick : {k % kBadNumbers.size(), (k + 3) % kBadNumbers.size()}) {
    auto choice = kBadNumbers[pick];
    // A huge but finite value can be legitimate for a float key: use the overflowing one.
    if (is_float_key(key) && choice.second == "99999999999999999999") choice = {"overflowing double", "1e400"};
    out.push_back(choice);
  }
  return out;
}

fs::path source_dir() { return fs::path(SAMBA_SOURCE_DIR); }

}  // namespace

TEST(BadInputs, GeneratedCorpusIsRefusedNamingTheKey) {
  ASSERT_FALSE(samba_bin().empty()) << "SAMBA_BIN is not set (run through ctest)";
  TempDir tmp;
  const fs::path dir = tmp.path();
  std::vector<Case> cases;
  int counter = 0;
  auto write = [&](const std::string& text) {
    const fs::path p = dir / ("case_" + std::to_string(counter++) + ".yaml");
    samba::testing::spit(p.string(), text);
    return p.string();
  };

  // ---- model configs, through `samba inspect` ----
  const fs::path models = source_dir() / "configs" / "models";
  size_t numeric = 0;
  for (const char* name : {"tiny-samba.yaml", "tiny-sliding-gla.yaml", "tiny-mega-s6.yaml"}) {
    YAML::Node root = YAML::LoadFile((models / name).string());
    if (root["include"]) root["include"] = (models / root["include"].as<std::string>()).string();
    for (const std::string& key : leaf_keys(root)) {
      if (key == "include" || key == "name") continue;
      const std::string original = key.find('.') == std::string::npos
                                       ? root[key].Scalar()
                                       : root[key.substr(0, key.find('.'))][key.substr(key.find('.') + 1)].Scalar();
      if (is_number(original)) {
        for (const auto& [what, value] : bad_numbers_for(key, numeric++))
          cases.push_back({std::string(name) + " " + key + " " + what, {"inspect", write(dump(with_value(root, key, value)))},
                           "key '" + key + "'", ""});
      } else {
        cases.push_back({std::string(name) + " " + key + " wrong value",
                         {"inspect", write(dump(with_value(root, key, "not-a-valid-value")))}, "key '" + key + "'", ""});
        cases.push_back({std::string(name) + " " + key + " map instead of scalar",
                         {"inspect", write(dump(with_value(root, key, "{a: 1}")))}, "key '" + key + "'", ""});
      }
    }
    const std::string text = dump(root);
    cases.push_back({std::string(name) + " duplicated key", {"inspect", write(text + "pattern: \"M-\"\n")},
                     "key 'pattern' appears twice", ""});
    cases.push_back({std::string(name) + " unknown key", {"inspect", write(text + "d_modle: 64\n")}, "key 'd_modle'", ""});
    cases.push_back({std::string(name) + " unknown nested key", {"inspect", write(text + "retnet: {chunk_sise: 8}\n")},
                     "key 'retnet.chunk_sise'", ""});
  }
  {
    YAML::Node root = YAML::LoadFile((models / "tiny-samba.yaml").string());
    cases.push_back({"missing d_model", {"inspect", write(dump(without(root, "d_model")))}, "key 'd_model'", ""});
    cases.push_back({"missing pattern", {"inspect", write(dump(without(root, "pattern")))}, "key 'pattern'", ""});
    cases.push_back({"missing mlp_hidden", {"inspect", write(dump(without(root, "mlp_hidden")))}, "key 'mlp_hidden'", ""});
    // The list: values that were accepted or crashed.
    cases.push_back({"seq_len 2^62", {"inspect", write(dump(with_value(root, "seq_len", "4611686018427387904")))},
                     "key 'seq_len'", ""});
    cases.push_back({"rope_base inf", {"inspect", write(dump(with_value(root, "attention.rope_base", ".inf")))},
                     "key 'attention.rope_base'", ""});
    cases.push_back({"include is a directory", {"inspect", write("include: " + models.string() + "\n")}, "is a directory", ""});
    cases.push_back({"bad override", {"inspect", (models / "tiny-samba.yaml").string(), "--set", "attention.windw=512"},
                     "--set attention.windw=512: unknown key 'attention.windw'", ""});
    cases.push_back({"bad override value",
                     {"inspect", (models / "tiny-samba.yaml").string(), "--set", "attention.window=-4"},
                     "--set attention.window=-4: key 'attention.window'", ""});
  }
  cases.push_back({"empty model file", {"inspect", write("")}, "the file is empty", ""});
  cases.push_back({"binary model file", {"inspect", write(std::string("\x7f" "ELF\x02\x01\x01\0\0\0", 10))}, "NUL bytes", ""});
  cases.push_back({"model is a directory", {"inspect", models.string()}, "directory", ""});

  // ---- training recipes, through `samba train` ----
  const fs::path run_dir = dir / "run-must-not-exist";
  YAML::Node recipe = YAML::LoadFile((source_dir() / "configs" / "train" / "tiny-samba-cpu.yaml").string());
  recipe["model"] = (models / "tiny-samba.yaml").string();
  recipe["data"] = (dir / "no-such-dataset").string();  // an accepted recipe fails later, differently
  recipe["run_dir"] = run_dir.string();
  auto train_case = [&](const std::string& what, const std::string& text, const std::string& expect,
                        std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"train", write(text), "--no-progress"};
    args.insert(args.end(), extra.begin(), extra.end());
    cases.push_back({"recipe " + what, args, expect, run_dir.string()});
  };
  for (const std::string& key : leaf_keys(recipe)) {
    if (key == "model" || key == "data" || key == "run_dir") {
      train_case(key + " list", dump(with_value(recipe, key, "[a, b]")), "key '" + key + "'");
      continue;
    }
    for (const auto& [what, value] : bad_numbers_for(key, numeric++)) {
      train_case(key + " " + what, dump(with_value(recipe, key, value)), "key '" + key + "'");
    }
  }
  const std::string base = dump(recipe);
  for (const char* required : {"model", "data", "run_dir", "max_tokens"})
    train_case(std::string("missing ") + required, dump(without(recipe, required)), std::string("key '") + required + "'");
  train_case("duplicated key", base + "micro_batch: 4\n", "key 'micro_batch' appears twice");
  train_case("duplicated nested key", dump(without(recipe, "optimizer")) + "optimizer: {lr: 1.0e-3, lr: 2.0e-3}\n",
             "key 'optimizer.lr' appears twice");
  train_case("unknown key", base + "warmup: 10\n", "key 'warmup'");
  train_case("unknown nested key", dump(with_value(recipe, "optimizer.betas", "[0.9, 0.95]")), "key 'optimizer.betas'");
  train_case("max_tokens 2^63-1", dump(with_value(recipe, "max_tokens", "9223372036854775807")), "key 'max_tokens'");
  train_case("global batch > max_tokens", dump(with_value(recipe, "global_batch_tokens", "1310720")),
             "key 'global_batch_tokens'");
  train_case("seq_len 2^62", base + "seq_len: 4611686018427387904\n", "key 'seq_len'");
  train_case("model is a directory", dump(with_value(recipe, "model", models.string())), "is a directory");
  train_case("model value error", base, "key 'attention.window'", {"--set", "model.attention.window=0"});
  train_case("misspelled override", base, "--set optimizer.lrr=1: unknown key 'optimizer.lrr'", {"--set", "optimizer.lrr=1"});
  train_case("override not KEY=VALUE", base, "--set max_tokens: expected KEY=VALUE", {"--set", "max_tokens"});
  train_case("stop after negative steps", base, "--stop-after-steps", {"--stop-after-steps", "-3"});
  // A run directory that cannot be created (/proc refuses even root): named, not "internal error".
  train_case("unwritable run_dir", dump(with_value(recipe, "run_dir", "/proc/samba-unwritable/run")),
             "'/proc/samba-unwritable/run'");
  train_case("empty recipe", "", "the file is empty");
  train_case("binary recipe", std::string("\x89PNG\r\n\x1a\n\0\0", 10), "NUL bytes");
  cases.push_back({"recipe is a directory", {"train", dir.string()}, "directory", ""});

  // ---- flags of the other commands ----
  for (const auto& [flag, value] : std::vector<std::pair<std::string, std::string>>{
           {"--lengths", "1,,2"}, {"--lengths", "0"}, {"--lengths", "99999999999999999999"}, {"--lengths", "1,1048576"},
           {"--max-tokens", "0"}, {"--max-tokens", "-5"}, {"--max-tokens", "99999999999999999999"}})
    cases.push_back({"eval " + flag + " " + value, {"eval", dir.string(), flag, value}, flag, ""});
  cases.push_back({"data --threads -1", {"data", "-i", dir.string(), "-o", (dir / "ds").string(), "--threads", "-1"},
                   "--threads", (dir / "ds").string()});

  ASSERT_GE(cases.size(), 100u) << "the corpus must hold at least 100 malformed inputs";
  std::printf("%zu malformed inputs\n", cases.size());
  check_outcomes(cases, run_all(cases, dir));
}
