#pragma once
// TensorBoard event files without TensorFlow or protobuf: TFRecord framing plus a
// hand-encoded Event/Summary proto for scalars (encoding: docs/FORMATS.md).
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

namespace samba::io {

struct ScalarEvent {
  int64_t step = 0;
  std::string tag;
  float value = 0.0f;
  double wall_time = 0.0;
};

// Writes <dir>/events.out.tfevents.<unix_time>.<hostname>[.<n>]; the directory is created if
// missing and an existing file of that name is never overwritten. Thread-safe.
class EventWriter {
 public:
  explicit EventWriter(const std::string& dir);
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  void add_scalar(const std::string& tag, float value, int64_t step);
  // With an explicit timestamp (seconds since the epoch), for replaying or testing.
  void add_scalar(const std::string& tag, float value, int64_t step, double wall_time);
  // Pushes buffered records to the OS so a running TensorBoard sees them.
  void flush();

  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& payload);
  std::string path_;
  std::FILE* file_ = nullptr;
  std::mutex mutex_;
};

// Every scalar (simple_value) in an event file, in file order. Checks both CRCs of every
// record; corruption or truncation fails with the record index and byte offset.
std::vector<ScalarEvent> read_tensorboard_scalars(const std::string& path);

}  // namespace samba::io
