#pragma once
// Command-line overrides of YAML configs: `--set attention.window=512`.
//
// An override is applied to the parsed YAML tree before the strict reader sees it, so it goes
// through exactly the validation a value written in the file gets: a misspelled key is an
// "unknown key" error, a bad value a range or type error. Errors about a value or key that an
// override put there name the override ("--set attention.windw=512: unknown key ...") rather
// than a line of the file.
//
// Syntax: KEY=VALUE. KEY is a dotted path of map keys (missing intermediate maps are created);
// VALUE is parsed as YAML, so `512`, `true`, `[mamba, mlp]`, `{window: 512}` and `"M-*-"`
// all work; a value that is not YAML only because of layer characters (`[M,*]`, `*-M-`) is
// taken literally as a flat list or a word. A map value replaces the whole map; use dotted
// keys to change one entry. An empty (or null) VALUE removes the key, e.g.
// `--set pattern= --set layers=[mamba, mlp]`.
#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

namespace samba {

struct Override {
  std::vector<std::string> path;  // "attention.window" -> {"attention", "window"}
  YAML::Node value;               // parsed VALUE
  std::string text;               // as the user wrote it (after the shown prefix), for messages
};

// Parses "KEY=VALUE"; `shown_prefix` is how the key was spelled on the command line before the
// part given here ("model." when a recipe routes `--set model.d_model=128` to the model config).
Override parse_override(const std::string& item, const std::string& shown_prefix = "");

// Applies overrides in order to the top-level map `root` (a later override of the same key wins).
// `file` names the config in errors about the tree's shape (e.g. a key that is not a map).
void apply_overrides(YAML::Node& root, const std::vector<std::string>& items, const std::string& file,
                     const std::string& shown_prefix = "");

// Splits recipe overrides: items whose key starts with `prefix` (e.g. "model.") go to `matched`
// with the prefix removed, the rest to `rest`. A bare "model=..." stays in `rest`.
void split_overrides(const std::vector<std::string>& items, const std::string& prefix,
                     std::vector<std::string>& matched, std::vector<std::string>& rest);

// The "--set KEY=VALUE" text of the override that created `node`, or "" if the node came from
// a file. Used by the strict reader (yaml_reader.cpp) to place its messages.
std::string override_origin(const YAML::Node& node);

}  // namespace samba
