#pragma once
// JSON Lines: one object per line, the metrics log format that tools can tail and plot.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace samba::io {

class JsonlWriter {
 public:
  // append=false truncates; append=true continues an existing file (resume) and drops a
  // trailing partial line left by a crash so every line stays parseable.
  explicit JsonlWriter(const std::string& path, bool append = false);
  ~JsonlWriter();
  JsonlWriter(const JsonlWriter&) = delete;
  JsonlWriter& operator=(const JsonlWriter&) = delete;

  // Writes `object` as one line and flushes it, so a crash loses at most the current line.
  // Invalid UTF-8 in strings is replaced rather than failing a training run over a log line.
  void write(const nlohmann::json& object);

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

// Parses every non-empty line; errors name the file and the 1-based line number.
std::vector<nlohmann::json> read_jsonl(const std::string& path);

}  // namespace samba::io
