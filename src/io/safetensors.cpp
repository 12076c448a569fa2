#include "samba/io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "samba/core/error.h"

namespace samba::io {
namespace {

// The reference implementation refuses headers above 100 MB; a bigger length field means
// the first bytes are not a safetensors header at all.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;
constexpr const char* kMetadataKey = "__metadata__";

struct DtypeEntry {
  const char* code;
  size_t size;
};
constexpr DtypeEntry kDtypes[] = {
    {"F64", 8}, {"F32", 4}, {"F16", 2},     {"BF16", 2},    {"I64", 8},
    {"I32", 4}, {"I16", 2}, {"I8", 1},      {"U64", 8},     {"U32", 4},
    {"U16", 2}, {"U8", 1},  {"BOOL", 1},    {"F8_E4M3", 1}, {"F8_E5M2", 1},
};

// Element count times element size, or false on overflow / negative dimension.
bool byte_size(const std::vector<int64_t>& shape, size_t elem, uint64_t* out) {
  uint64_t n = elem;
  for (int64_t d : shape) {
    if (d < 0) return false;
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return false;
  }
  *out = n;
  return true;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

void put_le64(unsigned char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

uint64_t get_le64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Checks one header entry and returns its info; `where` prefixes every error.
TensorInfo parse_entry(const std::string& where, const nlohmann::json& e) {
  check(e.is_object(), where, ": entry is ", e.type_name(),
        ", expected an object with dtype, shape and data_offsets");
  for (auto it = e.begin(); it != e.end(); ++it)
    check(it.key() == "dtype" || it.key() == "shape" || it.key() == "data_offsets", where,
          ": unexpected key '", it.key(), "' (allowed: dtype, shape, data_offsets)");
  TensorInfo info;
  auto dt = e.find("dtype");
  check(dt != e.end() && dt->is_string(), where, ": missing or non-string 'dtype'");
  info.dtype = dt->get<std::string>();
  size_t elem = safetensors_dtype_size(info.dtype);
  check(elem != 0, where, ": unknown dtype '", info.dtype, "' (known: ", safetensors_dtype_list(),
        "); the file was written by an incompatible tool or is corrupt");

  auto sh = e.find("shape");
  check(sh != e.end() && sh->is_array(), where, ": missing 'shape' or it is not an array");
  for (const auto& d : *sh) {
    check(d.is_number_integer() && d.get<int64_t>() >= 0, where, ": shape ", sh->dump(),
          " has an entry that is not a non-negative integer");
    info.shape.push_back(d.get<int64_t>());
  }

  auto off = e.find("data_offsets");
  check(off != e.end() && off->is_array() && off->size() == 2 && (*off)[0].is_number_unsigned() &&
            (*off)[1].is_number_unsigned(),
        where, ": 'data_offsets' must be [begin, end] with non-negative integers");
  uint64_t begin = (*off)[0].get<uint64_t>(), end = (*off)[1].get<uint64_t>();
  check(begin <= end, where, ": data_offsets [", begin, ", ", end, "] has begin after end");

  uint64_t expect = 0;
  check(byte_size(info.shape, elem, &expect), where, ": shape ", shape_str(info.shape),
        " overflows the byte count");
  check(end - begin == expect, where, ": data_offsets [", begin, ", ", end, "] span ", end - begin,
        " bytes but shape ", shape_str(info.shape), " of ", info.dtype, " needs ", expect,
        " bytes");
  info.offset = static_cast<size_t>(begin);
  info.nbytes = static_cast<size_t>(expect);
  return info;
}

}  // namespace

size_t safetensors_dtype_size(const std::string& dtype) {
  for (const auto& d : kDtypes)
    if (dtype == d.code) return d.size;
  return 0;
}

const char* safetensors_dtype_list() {
  return "F64 F32 F16 BF16 I64 I32 I16 I8 U64 U32 U16 U8 BOOL F8_E4M3 F8_E5M2";
}

void write_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::set<std::string> seen;
  for (const auto& t : tensors) {
    std::string where = "write_safetensors('" + path + "'): tensor '" + t.name + "'";
    check(!t.name.empty(), "write_safetensors('", path, "'): a tensor has an empty name");
    check(t.name != kMetadataKey, where, ": the name is reserved for metadata; rename it");
    check(seen.insert(t.name).second, where, ": duplicate name; tensor names must be unique");
    size_t elem = safetensors_dtype_size(t.dtype);
    check(elem != 0, where, ": unknown dtype '", t.dtype, "' (known: ", safetensors_dtype_list(),
          ")");
    uint64_t expect = 0;
    check(byte_size(t.shape, elem, &expect), where, ": invalid shape ", shape_str(t.shape));
    check(expect == t.nbytes, where, ": shape ", shape_str(t.shape), " of ", t.dtype, " needs ",
          expect, " bytes but the view has ", t.nbytes);
    check(t.nbytes == 0 || t.data != nullptr, where, ": data pointer is null");
  }

  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return safetensors_dtype_size(tensors[a].dtype) > safetensors_dtype_size(tensors[b].dtype);
  });

  // ordered_json keeps the header in data order, which makes hexdumps readable.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    auto& m = header[kMetadataKey] = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
  }
  uint64_t offset = 0;
  for (size_t i : order) {
    const auto& t = tensors[i];
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.nbytes}}};
    offset += t.nbytes;
  }
  std::string json;
  try {
    json = header.dump();
  } catch (const nlohmann::json::exception& e) {
    fail("write_safetensors('", path, "'): cannot encode the header (", e.what(),
         "); tensor names and metadata must be valid UTF-8");
  }
  json.append((8 - json.size() % 8) % 8, ' ');  // data buffer starts 8-byte aligned

  AtomicFileWriter out(path);
  unsigned char len[8];
  put_le64(len, json.size());
  out.write(len, 8);
  out.write(json);
  for (size_t i : order) out.write(tensors[i].data, tensors[i].nbytes);
  out.commit();
}

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  const std::string f = "safetensors file '" + path + "'";
  const size_t size = file_.size();
  check(size >= 8, f, " has ", size, " bytes, fewer than the 8-byte header length; ",
        "the file is empty or truncated");
  const uint64_t header_len = get_le64(file_.data());
  check(header_len <= size - 8, f, ": header length ", header_len, " is larger than the file (",
        size, " bytes); the file is truncated or not a safetensors file");
  check(header_len <= kMaxHeaderBytes, f, ": header length ", header_len,
        " exceeds the 100 MB limit; the file is not a safetensors file");
  data_start_ = 8 + static_cast<size_t>(header_len);

  const char* text = reinterpret_cast<const char*>(file_.data()) + 8;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text, text + header_len);
  } catch (const nlohmann::json::exception& e) {
    fail(f, ": header is not valid JSON (", e.what(), "); the file is corrupt");
  }
  check(header.is_object(), f, ": header is JSON ", header.type_name(),
        ", expected an object; the file is corrupt");

  struct Span {
    size_t begin, end;
    const std::string* name;
  };
  std::vector<Span> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == kMetadataKey) {
      check(it->is_object(), f, ": '__metadata__' must be an object of strings");
      for (auto m = it->begin(); m != it->end(); ++m) {
        check(m->is_string(), f, ": metadata value for '", m.key(), "' is ", m->type_name(),
              ", expected a string");
        metadata_[m.key()] = m->get<std::string>();
      }
      continue;
    }
    auto [slot, inserted] = index_.emplace(it.key(), parse_entry(f + ", tensor '" + it.key() + "'",
                                                                 it.value()));
    check(inserted, f, ": tensor '", it.key(), "' appears twice in the header");
    spans.push_back({slot->second.offset, slot->second.offset + slot->second.nbytes, &slot->first});
  }

  const size_t buffer = size - data_start_;
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  size_t data_end = 0;
  for (const auto& s : spans) data_end = std::max(data_end, s.end);
  check(data_end <= buffer, f, " is truncated: header says data ends at byte ",
        data_start_ + data_end, " but the file has ", size,
        " bytes; the checkpoint is incomplete or corrupt");
  size_t cursor = 0;
  const std::string* prev = nullptr;
  for (const auto& s : spans) {
    check(s.begin >= cursor, f, ": tensor '", *s.name, "' (bytes ", s.begin, "..", s.end,
          ") overlaps tensor '", (prev ? *prev : std::string()), "' which ends at ", cursor,
          "; the header is corrupt");
    check(s.begin == cursor, f, ": gap of ", s.begin - cursor, " unused bytes before tensor '",
          *s.name, "' at data offset ", cursor, "; safetensors requires the tensors to cover ",
          "the data buffer exactly");
    cursor = s.end;
    prev = s.name;
    names_.push_back(*s.name);
  }
  check(cursor == buffer, f, ": ", buffer - cursor,
        " trailing bytes after the last tensor (data ends at byte ", data_start_ + cursor,
        ", file has ", size, "); the file is corrupt or was appended to");
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    std::string known;
    for (size_t i = 0; i < names_.size() && i < 8; ++i) known += (i ? ", " : "") + names_[i];
    if (names_.size() > 8) known += ", ... (" + std::to_string(names_.size()) + " in all)";
    fail("safetensors file '", path(), "' has no tensor '", name, "' (it has: ", known,
         "); check the parameter name or the model config the file was exported from");
  }
  return it->second;
}

const void* SafetensorsFile::data(const std::string& name) const {
  return file_.data() + data_start_ + info(name).offset;
}

}  // namespace samba::io
