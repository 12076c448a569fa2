#include "samba/core/overrides.h"

#include <algorithm>
#include <cctype>
#include <optional>

#include "samba/core/error.h"

namespace samba {
namespace {

// The override's text rides in the YAML tag of every node it created. Tags are otherwise unused
// by the strict reader, and a node keeps its tag through every copy of the tree, so the reader
// can name the override without a side channel next to the node.
constexpr const char* kTagPrefix = "!samba-set:";

void mark_tree(YAML::Node node, const std::string& origin, int depth = 0) {
  // Override values are short flow expressions; the bound only guards against alias cycles.
  if (depth > 64) fail(origin, ": the value nests deeper than 64 levels");
  node.SetTag(kTagPrefix + origin);
  if (node.IsMap()) {
    for (auto kv : node) {
      mark_tree(kv.first, origin, depth + 1);
      mark_tree(kv.second, origin, depth + 1);
    }
  } else if (node.IsSequence()) {
    for (auto item : node) mark_tree(item, origin, depth + 1);
  }
}

// Const lookup: the non-const operator[] of yaml-cpp inserts an undefined entry for a missing
// key, which a later insertion under a key node would shadow.
YAML::Node lookup(const YAML::Node& map, const std::string& key) { return map[key]; }

// Layer characters are YAML syntax where a value starts with them ('*' is an alias, '-' a list
// item), so `--set layers=[M,*]` or `--set pattern=*-M-` are not valid YAML. A value that fails
// to parse is taken literally when that is unambiguous: a flat list of words, or one word.
std::optional<YAML::Node> literal_value(const std::string& v) {
  auto is_space = [](char c) { return c == ' ' || c == '\t'; };
  auto trim = [&](std::string x) {
    while (!x.empty() && is_space(x.front())) x.erase(x.begin());
    while (!x.empty() && is_space(x.back())) x.pop_back();
    return x;
  };
  const bool list = v.size() >= 2 && v.front() == '[' && v.back() == ']';
  const std::string body = list ? v.substr(1, v.size() - 2) : v;
  if (body.find_first_of("[]{}\"'#:") != std::string::npos) return std::nullopt;
  if (!list) {
    if (body.empty() || std::any_of(body.begin(), body.end(), is_space) || body.find(',') != std::string::npos)
      return std::nullopt;
    return YAML::Node(body);
  }
  YAML::Node seq(YAML::NodeType::Sequence);
  size_t start = 0;
  while (true) {
    const size_t comma = body.find(',', start);
    const std::string item = trim(body.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (item.empty() || std::any_of(item.begin(), item.end(), is_space)) return std::nullopt;
    seq.push_back(item);
    if (comma == std::string::npos) return seq;
    start = comma + 1;
  }
}

bool valid_key_part(const std::string& part) {
  if (part.empty()) return false;
  for (unsigned char c : part)
    if (!std::isalnum(c) && c != '_' && c != '-') return false;
  return true;
}

}  // namespace

Override parse_override(const std::string& item, const std::string& shown_prefix) {
  Override o;
  o.text = "--set " + shown_prefix + item;
  const size_t eq = item.find('=');
  if (eq == std::string::npos)
    fail(o.text, ": expected KEY=VALUE, e.g. --set attention.window=512 (nested keys are joined with '.')");
  const std::string key = item.substr(0, eq);
  size_t start = 0;
  while (true) {
    const size_t dot = key.find('.', start);
    o.path.push_back(key.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (!valid_key_part(o.path.back()))
      fail(o.text, ": '", shown_prefix + key, "' is not a key path; write names of letters, digits and '_' joined by '.', "
           "e.g. attention.window");
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  const std::string value = item.substr(eq + 1);
  try {
    o.value = YAML::Load(value);
  } catch (const YAML::Exception& e) {
    auto literal = literal_value(value);
    if (!literal)
      fail(o.text, ": the value is not valid YAML (", e.msg, "); quote characters YAML treats specially, "
           "e.g. --set 'name=\"a: b\"' or --set 'layers=[M, \"*\"]'");
    o.value = *literal;
  }
  mark_tree(o.value, o.text);
  return o;
}

void apply_overrides(YAML::Node& root, const std::vector<std::string>& items, const std::string& file,
                     const std::string& shown_prefix) {
  for (const auto& item : items) {
    Override o = parse_override(item, shown_prefix);
    if (!root.IsMap()) fail(o.text, ": ", file, " is not a map of keys, so there is nothing to override");
    YAML::Node map = root;
    std::string walked = shown_prefix;
    for (size_t i = 0; i + 1 < o.path.size(); ++i) {
      const std::string& part = o.path[i];
      walked += (i == 0 ? "" : ".") + part;
      // (A missing key gives an invalid node that cannot be assigned, so look up again after creating it.)
      const YAML::Node existing = lookup(map, part);
      if (!existing.IsDefined() || existing.IsNull()) {
        // A section the file does not have (or leaves empty): create it, marked as this override's.
        YAML::Node section(YAML::NodeType::Map);
        section.SetTag(kTagPrefix + o.text);
        if (existing.IsDefined()) {
          map[part] = section;
        } else {
          YAML::Node key(part);
          key.SetTag(kTagPrefix + o.text);
          map[key] = section;
        }
      } else if (!existing.IsMap()) {
        fail(o.text, ": '", walked, "' in ", file, " is a single value or a list, not a map of keys, so '",
             shown_prefix, item.substr(0, item.find('=')), "' cannot be set");
      }
      const YAML::Node next = lookup(map, part);
      map.reset(next);
    }
    const std::string& last = o.path.back();
    if (o.value.IsNull()) {
      // An empty value removes the key: back to the default (or to an included base's value),
      // e.g. --set pattern= --set layers=[mamba, mlp] to replace a pattern by a layer list.
      map.remove(last);
    } else if (lookup(map, last).IsDefined()) {
      map[last] = o.value;
    } else {
      YAML::Node key(last);
      key.SetTag(kTagPrefix + o.text);
      map[key] = o.value;
    }
  }
}

void split_overrides(const std::vector<std::string>& items, const std::string& prefix,
                     std::vector<std::string>& matched, std::vector<std::string>& rest) {
  for (const auto& item : items) {
    if (item.compare(0, prefix.size(), prefix) == 0) matched.push_back(item.substr(prefix.size()));
    else rest.push_back(item);
  }
}

std::string override_origin(const YAML::Node& node) {
  if (!node.IsDefined()) return "";
  const std::string& tag = node.Tag();
  const std::string prefix = kTagPrefix;
  return tag.compare(0, prefix.size(), prefix) == 0 ? tag.substr(prefix.size()) : "";
}

}  // namespace samba
