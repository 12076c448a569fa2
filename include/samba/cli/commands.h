#pragma once
// Each subcommand lives in its own src/cli/cmd_<name>.cpp and registers itself on the app.
#include <CLI/CLI.hpp>

namespace samba::cli {

void add_inspect_command(CLI::App& app);

}  // namespace samba::cli
