#include "samba/ablate/spec.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <limits>
#include <set>

#include "samba/core/error.h"
#include "samba/core/yaml_reader.h"

namespace samba::ablate {
namespace fs = std::filesystem;

namespace {

constexpr int64_t kBig = std::numeric_limits<int64_t>::max();

std::string located(const std::string& file, const YAML::Node& n) {
  const YAML::Mark m = n.Mark();
  if (m.is_null()) return file;
  return file + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
}

// A YAML list under `key` (absent: `out` untouched). Each item is checked by `item`.
template <typename F>
void read_list(YamlMap& m, const std::string& key, F&& item) {
  m.allow(key);
  if (!m.has(key)) return;
  const YAML::Node list = m.node()[key];
  if (!list.IsSequence()) m.error(key, "must be a list, e.g. [1, 2, 4] or one '- item' per line");
  for (size_t i = 0; i < list.size(); ++i) item(list[i], located(m.file(), list[i]) + ": item " + std::to_string(i + 1) + " of '" + key + "'");
}

void read_int_list(YamlMap& m, const std::string& key, std::vector<int64_t>& out, int64_t lo, int64_t hi) {
  if (!m.has(key)) return;
  out.clear();
  read_list(m, key, [&](const YAML::Node& n, const std::string& where) {
    int64_t v = 0;
    try {
      check(n.IsScalar(), "");
      v = n.as<int64_t>();
    } catch (const std::exception&) {
      fail(where, ": expected an integer");
    }
    check(v >= lo && v <= hi, where, ": ", v, " is out of range [", lo, ", ", hi, "]");
    out.push_back(v);
  });
  if (out.empty()) m.error(key, "must not be an empty list");
}

void read_string_list(YamlMap& m, const std::string& key, std::vector<std::string>& out) {
  read_list(m, key, [&](const YAML::Node& n, const std::string& where) {
    check(n.IsScalar(), where, ": expected a string such as \"model.attention.window=64\"");
    out.push_back(n.as<std::string>());
  });
}

std::string relative_to(const std::string& file, const std::string& path) {
  if (path.empty()) return path;
  fs::path p(path);
  if (p.is_absolute()) return p.string();
  return (fs::path(file).parent_path() / p).lexically_normal().string();
}

// Run keys, shared by `defaults:` and each item of `runs:`; a run starts from the defaults.
void read_run(YamlMap m, RunSpec& r, bool is_default) {
  if (!is_default) {
    m.read("name", r.name);
    if (r.name.empty()) m.error("name", "is required: the run's directory name, e.g. name: samba");
    for (char ch : r.name)
      if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_' && ch != '.')
        m.error("name", "'" + r.name + "' may only hold letters, digits, '-', '_' and '.' (it names a directory)");
    r.label = r.name;
    m.read("label", r.label);
  }
  std::string path;
  if (m.has("model")) {
    m.read("model", path);
    r.model = relative_to(m.file(), path);
    if (!fs::is_regular_file(r.model)) m.error("model", "file '" + r.model + "' does not exist (relative to the ablation file)");
  }
  if (m.has("recipe")) {
    m.read("recipe", path);
    r.recipe = relative_to(m.file(), path);
    if (!fs::is_regular_file(r.recipe)) m.error("recipe", "file '" + r.recipe + "' does not exist (relative to the ablation file)");
  }
  m.read("max_tokens", r.max_tokens, 1, kBig);
  std::vector<std::string> set;
  read_string_list(m, "set", set);
  for (const auto& s : set)
    if (s.find('=') == std::string::npos || s.front() == '=')
      m.error("set", "'" + s + "' is not KEY=VALUE (e.g. model.attention.window=64, optimizer.lr=1e-3)");
  // A run's overrides come after the defaults', so they win.
  r.set.insert(r.set.end(), set.begin(), set.end());
  m.read("passkey", r.passkey);
  m.finish();
}

}  // namespace

AblationSpec load_ablation(const std::string& path) {
  AblationSpec a;
  a.source = path;
  YamlMap m(load_yaml_file(path), path);
  m.read("name", a.name);
  if (a.name.empty()) m.error("name", "is required: a name for the ablation, e.g. name: table3-tiny");
  m.read("out_dir", a.out_dir);
  if (a.out_dir.empty()) m.error("out_dir", "is required: where runs and results go, e.g. out_dir: runs/ablations/table3");

  read_string_list(m, "train_launcher", a.train_launcher);

  {
    YamlMap d = m.child("data");
    d.read("dir", a.data.dir);
    d.read("input", a.data.input);
    d.read("vocab_size", a.data.vocab_size, 260, 1 << 20);  // samba data: 256 byte pieces + specials
    d.read("val_fraction", a.data.val_fraction, 1e-6, 0.5);
    if (!a.data.input.empty() && a.data.dir.empty()) d.error("input", "needs data.dir: where to write the prepared dataset");
    d.finish();
  }
  {
    YamlMap e = m.child("eval");
    read_int_list(e, "lengths", a.eval.multiples, 1, 1 << 16);
    e.read("max_tokens", a.eval.max_tokens, 1, kBig);
    e.read("max_blocks", a.eval.max_blocks, 0, kBig);
    e.finish();
  }
  {
    YamlMap p = m.child("passkey");
    p.read("finetune_steps", a.passkey.finetune_steps, 0, 1 << 24);
    p.read("finetune_length", a.passkey.finetune_length, 0, 1 << 24);
    p.read("finetune_batch", a.passkey.finetune_batch, 1, 1 << 16);
    p.read("lr", a.passkey.lr, 1e-9, 1.0);
    read_int_list(p, "lengths", a.passkey.lengths, 1, 1 << 24);
    p.read("depths", a.passkey.depths, 1, 101);
    p.read("trials", a.passkey.trials, 1, 100000);
    p.finish();
  }

  RunSpec defaults;
  read_run(m.child("defaults"), defaults, /*is_default=*/true);

  std::set<std::string> names;
  read_list(m, "runs", [&](const YAML::Node& n, const std::string& where) {
    RunSpec r = defaults;
    const std::string section = "runs[" + std::to_string(a.runs.size()) + "]";
    check(n.IsMap(), where, ": each run is a map (name:, model:, ...)");
    read_run(YamlMap(n, path, section), r, /*is_default=*/false);
    check(names.insert(r.name).second, where, ": a second run named '", r.name, "' (names are directories: make them unique)");
    check(!r.recipe.empty(), where, ": run '", r.name, "' has no recipe: set defaults.recipe or the run's recipe");
    a.runs.push_back(std::move(r));
  });
  if (a.runs.empty()) m.error("runs", "is required: a list of at least one run");
  m.finish();
  return a;
}

}  // namespace samba::ablate
