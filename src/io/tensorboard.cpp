#include "samba/io/tensorboard.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "samba/core/error.h"
#include "samba/io/crc32c.h"
#include "samba/io/files.h"

namespace samba::io {
namespace {

// Field numbers from tensorflow/core/util/event.proto and framework/summary.proto.
constexpr uint32_t kEventWallTime = 1;     // double
constexpr uint32_t kEventStep = 2;         // int64
constexpr uint32_t kEventFileVersion = 3;  // string
constexpr uint32_t kEventSummary = 5;      // Summary
constexpr uint32_t kSummaryValue = 1;      // repeated Summary.Value
constexpr uint32_t kValueTag = 1;          // string
constexpr uint32_t kValueSimple = 2;       // float

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

// ---- protobuf wire format, just the pieces scalars need ----

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void put_key(std::string& out, uint32_t field, WireType wt) { put_varint(out, (field << 3) | wt); }

template <typename T>
void put_fixed(std::string& out, T value) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "fixed32/fixed64 only");
  unsigned char raw[sizeof(T)];
  std::memcpy(raw, &value, sizeof(T));
  // Protobuf fixed fields are little-endian; copy the bits, then order the bytes explicitly.
  uint64_t bits = 0;
  for (size_t i = 0; i < sizeof(T); ++i) bits |= uint64_t(raw[i]) << (8 * i);
  for (size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<char>(bits >> (8 * i)));
}

void put_bytes(std::string& out, uint32_t field, const std::string& bytes) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out += bytes;
}

std::string encode_event(double wall_time, int64_t step, const std::string* file_version,
                         const std::string* summary) {
  std::string ev;
  put_key(ev, kEventWallTime, kFixed64);
  put_fixed(ev, wall_time);
  put_key(ev, kEventStep, kVarint);
  put_varint(ev, static_cast<uint64_t>(step));  // int64 negatives are 10-byte varints
  if (file_version) put_bytes(ev, kEventFileVersion, *file_version);
  if (summary) put_bytes(ev, kEventSummary, *summary);
  return ev;
}

// A bounds-checked cursor over one message; errors carry `where` (file, record, offset).
struct ProtoReader {
  const unsigned char* p;
  const unsigned char* end;
  const std::string& where;

  bool done() const { return p >= end; }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      check(p < end, where, ": protobuf varint runs past the end of the message");
      unsigned char b = *p++;
      v |= uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    fail(where, ": protobuf varint longer than 10 bytes; the event is corrupt");
  }
  uint64_t fixed(size_t n) {
    check(static_cast<size_t>(end - p) >= n, where, ": protobuf fixed field truncated");
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= uint64_t(p[i]) << (8 * i);
    p += n;
    return v;
  }
  ProtoReader sub() {
    uint64_t n = varint();
    check(n <= static_cast<uint64_t>(end - p), where,
          ": protobuf length-delimited field of ", n, " bytes runs past the end of the message");
    ProtoReader r{p, p + n, where};
    p += n;
    return r;
  }
  void skip(uint32_t wire_type) {
    switch (wire_type) {
      case kVarint: varint(); break;
      case kFixed64: fixed(8); break;
      case kLengthDelimited: sub(); break;
      case kFixed32: fixed(4); break;
      default: fail(where, ": unsupported protobuf wire type ", wire_type, "; the event is corrupt");
    }
  }
};

template <typename To, typename From>
To bit_cast(From from) {
  To to;
  std::memcpy(&to, &from, sizeof(To));
  return to;
}

void decode_value(ProtoReader r, ScalarEvent base, std::vector<ScalarEvent>& out) {
  bool has_simple = false;
  while (!r.done()) {
    uint64_t key = r.varint();
    uint32_t field = static_cast<uint32_t>(key >> 3), wt = key & 7;
    if (field == kValueTag && wt == kLengthDelimited) {
      ProtoReader s = r.sub();
      base.tag.assign(reinterpret_cast<const char*>(s.p), static_cast<size_t>(s.end - s.p));
    } else if (field == kValueSimple && wt == kFixed32) {
      base.value = bit_cast<float>(static_cast<uint32_t>(r.fixed(4)));
      has_simple = true;
    } else {
      r.skip(wt);
    }
  }
  if (has_simple) out.push_back(std::move(base));  // images, histograms, ... are not scalars
}

void decode_event(ProtoReader r, std::vector<ScalarEvent>& out) {
  ScalarEvent base;
  std::vector<ProtoReader> values;
  while (!r.done()) {
    uint64_t key = r.varint();
    uint32_t field = static_cast<uint32_t>(key >> 3), wt = key & 7;
    if (field == kEventWallTime && wt == kFixed64) {
      base.wall_time = bit_cast<double>(r.fixed(8));
    } else if (field == kEventStep && wt == kVarint) {
      base.step = static_cast<int64_t>(r.varint());
    } else if (field == kEventSummary && wt == kLengthDelimited) {
      ProtoReader summary = r.sub();
      while (!summary.done()) {
        uint64_t skey = summary.varint();
        if ((skey >> 3) == kSummaryValue && (skey & 7) == kLengthDelimited)
          values.push_back(summary.sub());
        else
          summary.skip(skey & 7);
      }
    } else {
      r.skip(wt);
    }
  }
  // Fields may come in any order, so values are decoded once step and wall_time are known.
  for (auto& v : values) decode_value(v, base, out);
}

uint32_t get_le32(const unsigned char* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

}  // namespace

EventWriter::EventWriter(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  check(!ec, "cannot create TensorBoard log directory '", dir, "': ", ec.message(),
        "; pick a writable directory");
  const double now = now_seconds();
  std::string base = (std::filesystem::path(dir) / ("events.out.tfevents." +
                                                    std::to_string(static_cast<int64_t>(now)) +
                                                    "." + host_name()))
                         .string();
  // Two writers started within the same second (e.g. a quick restart) must not clobber
  // each other; "x" makes the existence check and the create one atomic step.
  for (int n = 0; n < 1000 && !file_; ++n) {
    path_ = n == 0 ? base : base + "." + std::to_string(n);
    file_ = std::fopen(path_.c_str(), "wbx");
    if (!file_ && errno != EEXIST)
      fail("cannot create TensorBoard event file '", path_, "': ", std::strerror(errno),
           "; check that '", dir, "' is writable");
  }
  check(file_ != nullptr, "cannot create a fresh TensorBoard event file under '", dir,
        "': 1000 files named ", base, ".* already exist");
  const std::string version = "brain.Event:2";
  write_record(encode_event(now, 0, &version, nullptr));
  std::fflush(file_);
}

EventWriter::~EventWriter() {
  if (file_) std::fclose(file_);  // fclose flushes; errors cannot be reported from here
}

void EventWriter::add_scalar(const std::string& tag, float value, int64_t step) {
  add_scalar(tag, value, step, now_seconds());
}

void EventWriter::add_scalar(const std::string& tag, float value, int64_t step,
                             double wall_time) {
  std::string v;
  put_bytes(v, kValueTag, tag);
  put_key(v, kValueSimple, kFixed32);
  put_fixed(v, value);
  std::string summary;
  put_bytes(summary, kSummaryValue, v);
  std::lock_guard<std::mutex> lock(mutex_);
  write_record(encode_event(wall_time, step, nullptr, &summary));
}

void EventWriter::flush() {
  std::lock_guard<std::mutex> lock(mutex_);
  check(std::fflush(file_) == 0, "flushing TensorBoard event file '", path_,
        "' failed: ", std::strerror(errno), "; check free disk space");
}

// TFRecord: u64 length, u32 masked crc of those 8 bytes, payload, u32 masked crc of payload.
void EventWriter::write_record(const std::string& payload) {
  unsigned char head[12];
  const uint64_t n = payload.size();
  for (int i = 0; i < 8; ++i) head[i] = static_cast<unsigned char>(n >> (8 * i));
  uint32_t len_crc = masked_crc32c(crc32c(head, 8));
  for (int i = 0; i < 4; ++i) head[8 + i] = static_cast<unsigned char>(len_crc >> (8 * i));
  uint32_t data_crc = masked_crc32c(crc32c(payload.data(), payload.size()));
  unsigned char tail[4];
  for (int i = 0; i < 4; ++i) tail[i] = static_cast<unsigned char>(data_crc >> (8 * i));
  bool ok = std::fwrite(head, 1, 12, file_) == 12 &&
            std::fwrite(payload.data(), 1, payload.size(), file_) == payload.size() &&
            std::fwrite(tail, 1, 4, file_) == 4;
  check(ok, "writing TensorBoard event file '", path_, "' failed: ", std::strerror(errno),
        "; check free disk space");
}

std::vector<ScalarEvent> read_tensorboard_scalars(const std::string& path) {
  MappedFile file(path);
  const unsigned char* base = file.data();
  const size_t size = file.size();
  std::vector<ScalarEvent> out;
  size_t pos = 0;
  for (size_t index = 0; pos < size; ++index) {
    const std::string where = "TensorBoard event file '" + path + "', record " +
                              std::to_string(index) + " at byte " + std::to_string(pos);
    check(size - pos >= 12, where, ": truncated: ", size - pos,
          " bytes left, a record header needs 12; the writer was interrupted");
    const unsigned char* rec = base + pos;
    uint32_t want = get_le32(rec + 8), got = masked_crc32c(crc32c(rec, 8));
    check(want == got, where, ": length CRC mismatch (stored ", crc32c_hex(want), ", computed ",
          crc32c_hex(got), "); the file is corrupt");
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | rec[i];
    check(n <= size - pos - 12 && size - pos - 12 - n >= 4, where, ": truncated: the record needs ",
          n + 16, " bytes but only ", size - pos, " remain; the writer was interrupted");
    const unsigned char* payload = rec + 12;
    want = get_le32(payload + n);
    got = masked_crc32c(crc32c(payload, static_cast<size_t>(n)));
    check(want == got, where, ": data CRC mismatch (stored ", crc32c_hex(want), ", computed ",
          crc32c_hex(got), "); the file is corrupt");
    decode_event(ProtoReader{payload, payload + n, where}, out);
    pos += 16 + static_cast<size_t>(n);
  }
  return out;
}

}  // namespace samba::io
