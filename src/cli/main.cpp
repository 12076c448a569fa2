// samba: train, evaluate and export hybrid SSM / attention language models.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>

#include "samba/cli/commands.h"
#include "samba/core/error.h"
#include "samba/core/log.h"

int main(int argc, char** argv) {
  CLI::App app{"samba: train, evaluate and export Samba-style hybrid language models"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("samba ") + SAMBA_VERSION);
  samba::cli::add_data_command(app);
  samba::cli::add_train_command(app);
  samba::cli::add_eval_command(app);
  samba::cli::add_passkey_command(app);
  samba::cli::add_ablate_command(app);
  samba::cli::add_export_command(app);
  samba::cli::add_import_command(app);
  samba::cli::add_inspect_command(app);
  samba::cli::add_comm_check_command(app);
  try {
    samba::init_logging();
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const samba::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  } catch (const std::filesystem::filesystem_error& e) {
    // A path the user gave cannot be used (read-only filesystem, permissions, a full disk):
    // their problem to fix, so say which path and why, not "internal error".
    std::fprintf(stderr, "error: cannot use '%s'%s%s: %s; check that the location exists, is writable and has free space\n",
                 e.path1().c_str(), e.path2().empty() ? "" : " or ", e.path2().c_str(), e.code().message().c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "internal error: %s\n", e.what());
    return 3;
  }
  return 0;
}
