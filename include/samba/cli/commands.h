#pragma once
// Each subcommand lives in its own src/cli/cmd_<name>.cpp and registers itself on the app.
#include <CLI/CLI.hpp>

namespace samba::cli {

void add_inspect_command(CLI::App& app);
// `samba data`: corpus -> tokenizer + train/val token shards + dataset.json.
void add_data_command(CLI::App& app);
void add_train_command(CLI::App& app);
// `samba eval` (src/cli/cmd_eval.cpp).
void add_eval_command(CLI::App& app);
void add_export_command(CLI::App& app);  // src/cli/cmd_export.cpp
void add_import_command(CLI::App& app);  // src/cli/cmd_import.cpp
// `samba comm-check` (hidden): the launch environment and communicator of every rank.
void add_comm_check_command(CLI::App& app);
void add_passkey_command(CLI::App& app);  // src/cli/cmd_passkey.cpp
void add_ablate_command(CLI::App& app);   // src/cli/cmd_ablate.cpp

}  // namespace samba::cli
