#pragma once
// Strict reading of YAML maps into typed structs. Every key a parser asks about is recorded,
// so finish() can reject unknown keys and list the allowed ones. Errors carry file:line:col.
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace samba {

// Parses a YAML file or text; syntax errors become samba::Error naming file and line.
YAML::Node load_yaml_file(const std::string& path);
YAML::Node load_yaml_text(const std::string& text, const std::string& origin);

class YamlMap {
 public:
  // `section` is the dotted path of this map ("" at top level, "attention", ...).
  YamlMap(YAML::Node node, std::string file, std::string section = "");

  bool has(const std::string& key) const;
  const YAML::Node& node() const { return node_; }
  const std::string& file() const { return file_; }

  // Each reader leaves `out` untouched when the key is absent.
  void read(const std::string& key, int64_t& out, int64_t min_value, int64_t max_value);
  void read(const std::string& key, double& out, double min_value, double max_value);
  void read(const std::string& key, bool& out);
  void read(const std::string& key, std::string& out);
  // A string that must be one of `choices`.
  void read_choice(const std::string& key, std::string& out, const std::vector<std::string>& choices);
  // A nested map; absent key = empty map. The child must be finish()ed too.
  YamlMap child(const std::string& key);
  // Marks a key as known without reading it (handled elsewhere).
  void allow(const std::string& key);

  // Throws on any key that no reader asked about.
  void finish() const;

  // "file:line:col: key 'section.key'" prefix for error messages about a key.
  std::string where(const std::string& key) const;
  [[noreturn]] void error(const std::string& key, const std::string& message) const;

 private:
  YAML::Node value(const std::string& key);
  std::string qualified(const std::string& key) const;

  YAML::Node node_;
  std::string file_;
  std::string section_;
  std::set<std::string> known_;
};

}  // namespace samba
