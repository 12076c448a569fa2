#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "io_test_util.h"
#include "samba/io/safetensors.h"

using namespace samba::io;
using samba::testing::error_of;
using samba::testing::slurp;
using samba::testing::spit;
using samba::testing::TempDir;

namespace {

struct Owned {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

// Deterministic, name-dependent bytes so a swapped tensor is caught.
Owned make(const std::string& name, const std::string& dtype, std::vector<int64_t> shape) {
  size_t n = safetensors_dtype_size(dtype);
  for (auto d : shape) n *= static_cast<size_t>(d);
  Owned o{name, dtype, std::move(shape), std::string(n, '\0')};
  for (size_t i = 0; i < n; ++i) o.bytes[i] = static_cast<char>(i * 7 + name.size() * 13 + 1);
  return o;
}

std::vector<TensorView> views(const std::vector<Owned>& ts) {
  std::vector<TensorView> v;
  for (const auto& t : ts) v.push_back({t.name, t.dtype, t.shape, t.bytes.data(), t.bytes.size()});
  return v;
}

std::vector<Owned> sample() {
  return {make("layers.0.mixer.in_proj.weight", "F32", {3, 5}), make("mask", "BOOL", {}),
          make("ids", "I64", {4}),  make("embed.weight", "BF16", {2, 3}),
          make("half", "F16", {2, 2}), make("wide", "F64", {2, 3}),
          make("i32", "I32", {3}),     make("i16", "I16", {1, 1}),
          make("bytes", "U8", {7}),    make("i8", "I8", {5}),
          make("empty", "F32", {0}),   make("empty3d", "U8", {3, 0, 2}),
          make("scalar", "F32", {})};
}

// A file from a hand-written header, for the corruption cases the writer cannot produce.
void write_raw(const std::string& path, const std::string& header, size_t data_bytes,
               uint64_t declared_len = UINT64_MAX) {
  std::string h = header;
  h.append((8 - h.size() % 8) % 8, ' ');
  uint64_t len = declared_len == UINT64_MAX ? h.size() : declared_len;
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[i] = static_cast<char>(len >> (8 * i));
  spit(path, file + h + std::string(data_bytes, 'd'));
}

bool have_python() { return std::system("command -v python3 > /dev/null 2>&1") == 0; }

int run_checker(const std::string& args) {
  const std::string cmd =
      std::string("python3 ") + SAMBA_SOURCE_DIR + "/tests/tools/check_safetensors.py " + args;
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

void expect_error(const std::string& path, const std::vector<std::string>& needles) {
  std::string msg = error_of([&] { SafetensorsFile f(path); });
  ASSERT_FALSE(msg.empty()) << "opening " << path << " should have failed";
  EXPECT_NE(msg.find(path), std::string::npos) << "message does not name the file: " << msg;
  for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << msg;
}

}  // namespace

TEST(Safetensors, RoundTripManyDtypesAndShapes) {
  TempDir tmp;
  const auto path = tmp.file("model.safetensors");
  const auto tensors = sample();
  std::map<std::string, std::string> meta{{"format", "pt"}, {"step", "1200"}, {"note", "ünï"}};
  write_safetensors(path, views(tensors), meta);

  SafetensorsFile f(path);
  EXPECT_EQ(f.metadata(), meta);
  EXPECT_EQ(f.data_start() % 8, 0u);
  ASSERT_EQ(f.names().size(), tensors.size());
  for (const auto& t : tensors) {
    SCOPED_TRACE(t.name);
    ASSERT_TRUE(f.contains(t.name));
    const auto& info = f.info(t.name);
    EXPECT_EQ(info.dtype, t.dtype);
    EXPECT_EQ(info.shape, t.shape);
    EXPECT_EQ(info.nbytes, t.bytes.size());
    const auto* p = static_cast<const char*>(f.data(t.name));
    EXPECT_EQ(std::string(p, info.nbytes), t.bytes);
    // Layout by descending element size keeps every tensor naturally aligned in the map.
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % safetensors_dtype_size(t.dtype), 0u);
  }
  std::string msg = error_of([&] { f.info("nope"); });
  EXPECT_NE(msg.find("nope"), std::string::npos);
  EXPECT_NE(msg.find(f.names().front()), std::string::npos) << "should list known names: " << msg;
}

TEST(Safetensors, NoTensorsAndNoMetadata) {
  TempDir tmp;
  write_safetensors(tmp.file("e.safetensors"), {});
  SafetensorsFile f(tmp.file("e.safetensors"));
  EXPECT_TRUE(f.names().empty());
  EXPECT_TRUE(f.metadata().empty());
  EXPECT_EQ(f.file_size(), f.data_start());
}

TEST(Safetensors, WriterRejectsBadViews) {
  TempDir tmp;
  const auto path = tmp.file("bad.safetensors");
  auto t = make("w", "F32", {2, 2});
  auto v = views({t});
  v[0].nbytes = 12;
  EXPECT_NE(error_of([&] { write_safetensors(path, v); }).find("needs 16 bytes"), std::string::npos);
  v = views({t, t});
  EXPECT_NE(error_of([&] { write_safetensors(path, v); }).find("duplicate"), std::string::npos);
  v = views({t});
  v[0].dtype = "F12";
  EXPECT_NE(error_of([&] { write_safetensors(path, v); }).find("unknown dtype"), std::string::npos);
  v = views({t});
  v[0].name = "__metadata__";
  EXPECT_NE(error_of([&] { write_safetensors(path, v); }).find("reserved"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_TRUE(std::filesystem::is_empty(tmp.path())) << "a failed write left a temp file";
}

TEST(Safetensors, TruncatedFile) {
  TempDir tmp;
  const auto path = tmp.file("t.safetensors");
  write_safetensors(path, views(sample()));
  std::string bytes = slurp(path);
  spit(path, bytes.substr(0, bytes.size() - 5));
  expect_error(path, {"truncated", std::to_string(bytes.size()), std::to_string(bytes.size() - 5)});
  spit(path, bytes.substr(0, 5));
  expect_error(path, {"fewer than the 8-byte"});
}

TEST(Safetensors, FlippedHeaderByteIsInvalidJson) {
  TempDir tmp;
  const auto path = tmp.file("j.safetensors");
  write_safetensors(path, views(sample()));
  std::string bytes = slurp(path);
  size_t quote = bytes.find("\"dtype\"");
  ASSERT_NE(quote, std::string::npos);
  bytes[quote + 6] ^= 0x01;  // '"' -> '#': the key string never closes properly
  spit(path, bytes);
  expect_error(path, {"not valid JSON"});
}

TEST(Safetensors, HeaderLengthLargerThanFile) {
  TempDir tmp;
  const auto path = tmp.file("h.safetensors");
  write_raw(path, R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", 2, 1ull << 40);
  expect_error(path, {"header length 1099511627776", "larger than the file"});
}

TEST(Safetensors, OverlappingOffsets) {
  TempDir tmp;
  const auto path = tmp.file("o.safetensors");
  write_raw(path,
            R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
            R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
            12);
  expect_error(path, {"'b'", "overlaps", "'a'"});
}

TEST(Safetensors, UnknownDtype) {
  TempDir tmp;
  const auto path = tmp.file("u.safetensors");
  write_raw(path, R"({"w":{"dtype":"F13","shape":[1],"data_offsets":[0,4]}})", 4);
  expect_error(path, {"tensor 'w'", "unknown dtype 'F13'"});
}

TEST(Safetensors, OtherStructuralErrors) {
  TempDir tmp;
  const auto path = tmp.file("x.safetensors");
  write_raw(path, R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8);
  expect_error(path, {"tensor 'w'", "needs 12 bytes"});
  write_raw(path, R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}})", 3);
  expect_error(path, {"gap of 1"});
  write_raw(path, R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", 5);
  expect_error(path, {"3 trailing bytes"});
  write_raw(path, R"([1,2,3])", 0);
  expect_error(path, {"expected an object"});
  write_raw(path, R"({"w":{"dtype":"U8","shape":[-2],"data_offsets":[0,0]}})", 0);
  expect_error(path, {"non-negative"});
  write_raw(path, R"({"__metadata__":{"k":5}})", 0);
  expect_error(path, {"metadata value for 'k'"});
}

TEST(Safetensors, PythonCheckerAgrees) {
  if (!have_python()) GTEST_SKIP() << "python3 not on PATH";
  TempDir tmp;
  const auto path = tmp.file("py.safetensors");
  const auto tensors = sample();
  write_safetensors(path, views(tensors), {{"format", "pt"}});
  std::string names;
  for (const auto& t : tensors) names += (names.empty() ? "" : ",") + t.name;
  EXPECT_EQ(run_checker(path + " --expect-names " + names), 0);
  EXPECT_NE(run_checker(path + " --quiet --expect-names " + names + ",missing.weight"), 0);

  const auto bad = tmp.file("bad.safetensors");
  std::string bytes = slurp(path);
  spit(bad, bytes.substr(0, bytes.size() - 3));
  EXPECT_NE(run_checker(bad + " --quiet"), 0) << "checker accepted a truncated file";
  write_raw(bad,
            R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
            R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
            12);
  EXPECT_NE(run_checker(bad + " --quiet"), 0) << "checker accepted overlapping tensors";
}
