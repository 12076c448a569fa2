#include "samba/io/jsonl.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "samba/core/error.h"
#include "samba/io/files.h"

namespace samba::io {
namespace {

// Length of `path` up to and including its last newline (0 if none).
uintmax_t complete_prefix_length(const std::string& path) {
  MappedFile f(path);
  const uint8_t* d = f.data();
  for (size_t i = f.size(); i > 0; --i)
    if (d[i - 1] == '\n') return i;
  return 0;
}

}  // namespace

JsonlWriter::JsonlWriter(const std::string& path, bool append) : path_(path) {
  std::error_code ec;
  if (append && std::filesystem::is_regular_file(path, ec)) {
    uintmax_t keep = complete_prefix_length(path);
    if (keep != std::filesystem::file_size(path)) {
      std::filesystem::resize_file(path, keep, ec);
      check(!ec, "cannot drop the partial last line of '", path, "': ", ec.message());
    }
  }
  file_ = std::fopen(path.c_str(), append ? "ab" : "wb");
  check(file_ != nullptr, "cannot open '", path, "' for writing: ", std::strerror(errno),
        "; check that the directory exists and is writable");
}

JsonlWriter::~JsonlWriter() {
  if (file_) std::fclose(file_);
}

void JsonlWriter::write(const nlohmann::json& object) {
  check(object.is_object(), "JsonlWriter('", path_, "'): each line must be a JSON object, got ",
        object.type_name());
  std::string line = object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  line.push_back('\n');
  bool ok = std::fwrite(line.data(), 1, line.size(), file_) == line.size() &&
            std::fflush(file_) == 0;
  check(ok, "writing '", path_, "' failed: ", std::strerror(errno), "; check free disk space");
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  const std::string text = read_file(path);
  std::vector<nlohmann::json> out;
  size_t start = 0, line_no = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    ++line_no;
    std::string_view line(text.data() + start, end - start);
    if (line.find_first_not_of(" \t\r") != std::string_view::npos) {
      try {
        out.push_back(nlohmann::json::parse(line));
      } catch (const nlohmann::json::exception& e) {
        fail("'", path, "' line ", line_no, " is not valid JSON (", e.what(),
             "); the file is corrupt or was cut mid-line");
      }
    }
    start = end + 1;
  }
  return out;
}

}  // namespace samba::io
