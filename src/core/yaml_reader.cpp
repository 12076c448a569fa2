#include "samba/core/yaml_reader.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

#include "samba/core/error.h"
#include "samba/core/overrides.h"

namespace samba {
namespace {

std::string mark_string(const std::string& file, const YAML::Mark& m) {
  std::ostringstream os;
  os << file;
  if (!m.is_null()) os << ":" << (m.line + 1) << ":" << (m.column + 1);
  return os.str();
}

// Where a node came from: the `--set` override that created it, or file:line:col.
std::string origin_of(const YAML::Node& node, const std::string& file) {
  const std::string o = override_origin(node);
  if (!o.empty()) return o;
  return mark_string(file, node.IsDefined() ? node.Mark() : YAML::Mark::null_mark());
}

std::string join(const std::set<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// yaml-cpp keeps both entries of a duplicated key and lookups return the first, so a second
// `lr:` line further down would be silently ignored. Walk every map and refuse duplicates.
// `budget` bounds the walk (aliases can make a small file a huge tree).
void reject_duplicate_keys(const YAML::Node& node, const std::string& origin, const std::string& section, int depth,
                           int64_t& budget) {
  if (--budget < 0 || depth > 200)
    fail(origin, ": the YAML nests too deeply or expands to too many values (aliases?); configs are small maps");
  if (node.IsSequence()) {
    for (const auto& item : node) reject_duplicate_keys(item, origin, section, depth + 1, budget);
    return;
  }
  if (!node.IsMap()) return;
  std::map<std::string, YAML::Mark> seen;
  for (const auto& kv : node) {
    const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "";
    const std::string qualified = section.empty() ? key : section + "." + key;
    if (kv.first.IsScalar()) {
      auto [it, inserted] = seen.emplace(key, kv.first.Mark());
      if (!inserted)
        fail(mark_string(origin, kv.first.Mark()), ": key '", qualified, "' appears twice (first at ",
             mark_string(origin, it->second), "); delete one of them");
    }
    reject_duplicate_keys(kv.second, origin, qualified, depth + 1, budget);
  }
}

YAML::Node checked_root(YAML::Node root, const std::string& origin) {
  if (root.IsNull()) fail(origin, ": the file is empty; expected a YAML map of keys");
  if (!root.IsMap()) fail(mark_string(origin, root.Mark()), ": expected a YAML map (key: value lines) at the top level");
  int64_t budget = 1'000'000;
  reject_duplicate_keys(root, origin, "", 0, budget);
  return root;
}

// YAML's spellings of infinity and not-a-number, which std::stod does not know.
bool yaml_non_finite(const std::string& s) {
  static const char* kSpellings[] = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf",
                                     "-.Inf", "-.INF", ".nan", ".NaN", ".NAN"};
  for (const char* k : kSpellings)
    if (s == k) return true;
  return false;
}

std::string number_string(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

}  // namespace

YAML::Node load_yaml_text(const std::string& text, const std::string& origin) {
  try {
    return checked_root(YAML::Load(text), origin);
  } catch (const YAML::Exception& e) {
    fail(mark_string(origin, e.mark), ": YAML syntax error: ", e.msg);
  }
}

YAML::Node load_yaml_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    fail("config file '", path, "' is a directory; give the path of a YAML file in it");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open config file '", path, "': check the path (it is resolved relative to the current directory)");
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail("cannot read config file '", path, "'");
  const std::string text = ss.str();
  if (text.find('\0') != std::string::npos)
    fail(path, ": holds NUL bytes, so it is not a text (YAML) file; check the path");
  return load_yaml_text(text, path);
}

YamlMap::YamlMap(YAML::Node node, std::string file, std::string section)
    : node_(std::move(node)), file_(std::move(file)), section_(std::move(section)) {
  if (node_.IsDefined() && !node_.IsNull() && !node_.IsMap()) {
    fail(origin_of(node_, file_), ": '", section_.empty() ? "top level" : section_,
         "' must be a map of keys (key: value), not a ", node_.IsSequence() ? "list" : "single value");
  }
}

std::string YamlMap::qualified(const std::string& key) const {
  return section_.empty() ? key : section_ + "." + key;
}

bool YamlMap::has(const std::string& key) const {
  return node_.IsMap() && node_[key].IsDefined();
}

std::string YamlMap::where(const std::string& key) const {
  const YAML::Node& n = node_;  // const: yaml-cpp's non-const operator[] inserts missing keys
  return origin_of(has(key) ? n[key] : n, file_) + ": key '" + qualified(key) + "'";
}

void YamlMap::error(const std::string& key, const std::string& message) const {
  fail(where(key), ": ", message);
}

void YamlMap::allow(const std::string& key) { known_.insert(key); }

YAML::Node YamlMap::value(const std::string& key) {
  known_.insert(key);
  if (!has(key)) return YAML::Node(YAML::NodeType::Undefined);
  YAML::Node v = node_[key];
  if (v.IsNull()) error(key, "has no value; give one or delete the line");
  return v;
}

void YamlMap::read(const std::string& key, int64_t& out, int64_t min_value, int64_t max_value) {
  YAML::Node v = value(key);
  if (!v.IsDefined()) return;
  // Upper bounds at or above int32 max are sanity limits; they are named only when exceeded.
  const bool sanity_max = max_value >= std::numeric_limits<int32_t>::max();
  const std::string range = sanity_max ? ">= " + std::to_string(min_value)
                                       : "between " + std::to_string(min_value) + " and " + std::to_string(max_value);
  if (!v.IsScalar()) error(key, "must be an integer (" + range + "), not a map or list");
  const std::string& s = v.Scalar();
  if (s.empty()) error(key, "must be an integer (" + range + "), got an empty string");
  int64_t parsed = 0;
  bool out_of_range = false;
  try {
    size_t used = 0;
    // Accept "4096" and exact float spellings such as "4e3".
    parsed = std::stoll(s, &used, 10);
    if (used != s.size()) throw std::invalid_argument(s);
  } catch (const std::out_of_range&) {
    out_of_range = true;
  } catch (const std::invalid_argument&) {
    double d = 0;
    size_t used = 0;
    try {
      d = std::stod(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != s.size() || !std::isfinite(d) || d != std::floor(d))
      error(key, "must be an integer (" + range + "), got '" + s + "'");
    // 2^63 is exactly representable; anything at or beyond it does not fit an int64.
    if (d >= 9223372036854775808.0 || d < -9223372036854775808.0) out_of_range = true;
    else parsed = static_cast<int64_t>(d);
  }
  if (out_of_range || parsed < min_value || parsed > max_value) {
    const std::string got = out_of_range ? s + " (does not fit a 64-bit integer)" : std::to_string(parsed);
    if (sanity_max && !out_of_range && parsed < min_value)
      error(key, "must be >= " + std::to_string(min_value) + ", got " + got);
    error(key, "must be between " + std::to_string(min_value) + " and " + std::to_string(max_value) + ", got " + got);
  }
  out = parsed;
}

void YamlMap::read(const std::string& key, double& out, double min_value, double max_value) {
  YAML::Node v = value(key);
  if (!v.IsDefined()) return;
  const std::string range = "between " + number_string(min_value) + " and " + number_string(max_value);
  if (!v.IsScalar()) error(key, "must be a number (" + range + "), not a map or list");
  const std::string& s = v.Scalar();
  double parsed = 0;
  bool ok = !yaml_non_finite(s) && !s.empty();
  if (ok) {
    try {
      size_t used = 0;
      parsed = std::stod(s, &used);
      ok = used == s.size();
    } catch (const std::out_of_range&) {
      parsed = std::numeric_limits<double>::infinity();  // "1e999": too large for a double
    } catch (const std::exception&) {
      ok = false;
    }
  }
  if (!ok && !yaml_non_finite(s)) error(key, "must be a number (" + range + "), got '" + s + "'");
  // Infinity and NaN poison every computation downstream (NaN from step 1), so no config value
  // may be non-finite, whatever its range.
  if (!ok || !std::isfinite(parsed)) error(key, "must be a finite number (" + range + "), got " + s);
  if (!(parsed >= min_value && parsed <= max_value)) error(key, "must be " + range + ", got " + s);
  out = parsed;
}

void YamlMap::read(const std::string& key, bool& out) {
  YAML::Node v = value(key);
  if (!v.IsDefined()) return;
  if (!v.IsScalar()) error(key, "must be true or false");
  const std::string& s = v.Scalar();
  if (s == "true" || s == "True" || s == "yes" || s == "on") out = true;
  else if (s == "false" || s == "False" || s == "no" || s == "off") out = false;
  else error(key, "must be true or false, got '" + s + "'");
}

void YamlMap::read(const std::string& key, std::string& out) {
  YAML::Node v = value(key);
  if (!v.IsDefined()) return;
  if (!v.IsScalar()) error(key, "must be a string, not a map or list");
  out = v.Scalar();
}

void YamlMap::read_choice(const std::string& key, std::string& out, const std::vector<std::string>& choices) {
  std::string s = out;
  read(key, s);
  if (!has(key)) return;
  for (const auto& c : choices) {
    if (c == s) {
      out = s;
      return;
    }
  }
  std::string allowed;
  for (const auto& c : choices) allowed += (allowed.empty() ? "" : ", ") + c;
  error(key, "must be one of: " + allowed + "; got '" + s + "'");
}

YamlMap YamlMap::child(const std::string& key) {
  YAML::Node v = value(key);
  if (!v.IsDefined()) return YamlMap(YAML::Node(YAML::NodeType::Undefined), file_, qualified(key));
  return YamlMap(v, file_, qualified(key));
}

void YamlMap::finish() const {
  if (!node_.IsMap()) return;
  for (const auto& kv : node_) {
    const std::string key = kv.first.Scalar();
    if (!known_.count(key)) {
      fail(origin_of(kv.first, file_), ": unknown key '", qualified(key), "'; allowed keys",
           section_.empty() ? "" : " in '" + section_ + "'", ": ", join(known_));
    }
  }
}

}  // namespace samba
