#pragma once
// Logging: spdlog to the console (stderr) and optionally to a file. Use plain {} placeholders
// only (they work with both fmt and std::format, see gpu-machine.md).
#include <spdlog/spdlog.h>

#include <string>

namespace samba {

// Sets the default logger: console, plus `file` when non-empty (appended). Idempotent.
void init_logging(const std::string& file = "", const std::string& level = "info");

}  // namespace samba
