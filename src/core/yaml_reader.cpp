#include "samba/core/yaml_reader.h"

#include <limits>

#include <fstream>
#include <sstream>

#include "samba/core/error.h"

namespace samba {
namespace {

std::string mark_string(const std::string& file, const YAML::Mark& m) {
  std::ostringstream os;
  os << file;
  if (!m.is_null()) os << ":" << (m.line + 1) << ":" << (m.column + 1);
  return os.str();
}

std::string join(const std::set<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

YAML::Node checked_root(YAML::Node root, const std::string& origin) {
  if (root.IsNull()) fail(origin, ": the file is empty; expected a YAML map of keys");
  if (!root.IsMap()) fail(mark_string(origin, root.Mark()), ": expected a YAML map (key: value lines) at the top level");
  return root;
}

}  // namespace

YAML::Node load_yaml_text(const std::string& text, const std::string& origin) {
  try {
    return checked_root(YAML::Load(text), origin);
  } catch (const YAML::ParserException& e) {
    fail(mark_string(origin, e.mark), ": YAML syntax error: ", e.msg);
  }
}

YAML::Node load_yaml_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("cannot open config file '", path, "': check the path (it is resolved relative to the current directory)");
  std::stringstream ss;
  ss << in.rdbuf();
  return load_yaml_text(ss.str(), path);
}

YamlMap::YamlMap(YAML::Node node, std::string file, std::string section)
    : node_(std::move(node)), file_(std::move(file)), section_(std::move(section)) {
  if (node_.IsDefined() && !node_.IsNull() && !node_.IsMap()) {
    fail(mark_string(file_, node_.Mark()), ": '", section_.empty() ? "top level" : section_,
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
  YAML::Mark m = YAML::Mark::null_mark();
  if (has(key)) m = node_[key].Mark();
  else if (node_.IsDefined()) m = node_.Mark();
  return mark_string(file_, m) + ": key '" + qualified(key) + "'";
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
  if (!v.IsScalar()) error(key, "must be an integer, not a map or list");
  int64_t parsed = 0;
  const std::string& s = v.Scalar();
  try {
    size_t used = 0;
    // Accept "4096" and exact float spellings such as "4e3".
    parsed = std::stoll(s, &used, 10);
    if (used != s.size()) {
      double d = std::stod(s, &used);
      if (used != s.size() || d != static_cast<double>(static_cast<int64_t>(d))) throw std::invalid_argument(s);
      parsed = static_cast<int64_t>(d);
    }
  } catch (const std::exception&) {
    error(key, "must be an integer, got '" + s + "'");
  }
  if (parsed < min_value || parsed > max_value) {
    // Upper bounds at or above int32 max are sanity limits, not something to tell the user.
    if (max_value >= std::numeric_limits<int32_t>::max())
      error(key, "must be >= " + std::to_string(min_value) + ", got " + std::to_string(parsed));
    error(key, "must be between " + std::to_string(min_value) + " and " + std::to_string(max_value) +
                   ", got " + std::to_string(parsed));
  }
  out = parsed;
}

void YamlMap::read(const std::string& key, double& out, double min_value, double max_value) {
  YAML::Node v = value(key);
  if (!v.IsDefined()) return;
  if (!v.IsScalar()) error(key, "must be a number, not a map or list");
  const std::string& s = v.Scalar();
  double parsed = 0;
  try {
    size_t used = 0;
    parsed = std::stod(s, &used);
    if (used != s.size()) throw std::invalid_argument(s);
  } catch (const std::exception&) {
    error(key, "must be a number, got '" + s + "'");
  }
  if (!(parsed >= min_value && parsed <= max_value)) {
    std::ostringstream os;
    os << "must be between " << min_value << " and " << max_value << ", got " << s;
    error(key, os.str());
  }
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
      fail(mark_string(file_, kv.first.Mark()), ": unknown key '", qualified(key), "'; allowed keys",
           section_.empty() ? "" : " in '" + section_ + "'", ": ", join(known_));
    }
  }
}

}  // namespace samba
