#pragma once
// Torch-free safetensors writer and validating reader (format: docs/FORMATS.md).
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "samba/io/files.h"

namespace samba::io {

// A tensor to write: raw little-endian, row-major bytes owned by the caller.
struct TensorView {
  std::string name;
  std::string dtype;  // safetensors code: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL ...
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;
};

struct TensorInfo {
  std::string dtype;
  std::vector<int64_t> shape;
  size_t offset = 0;  // from the start of the data buffer (the byte after the header)
  size_t nbytes = 0;
};

// Bytes per element of a safetensors dtype code; 0 if the code is unknown.
size_t safetensors_dtype_size(const std::string& dtype);
// The codes we accept, space separated, for error messages.
const char* safetensors_dtype_list();

// Writes atomically (temp file + fsync + rename), streaming each tensor's bytes. Tensors are
// laid out by descending element size (stable otherwise), so every tensor in the mapped file
// is naturally aligned for its dtype.
void write_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Memory-maps a safetensors file and validates all of it up front, so a truncated or corrupt
// checkpoint fails at open with a message naming the file and the tensor.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return file_.path(); }
  // In data order (ascending offset).
  const std::vector<std::string>& names() const { return names_; }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;
  const void* data(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Total file size and the absolute offset where the data buffer starts.
  size_t file_size() const { return file_.size(); }
  size_t data_start() const { return data_start_; }

 private:
  MappedFile file_;
  size_t data_start_ = 0;
  std::vector<std::string> names_;
  std::unordered_map<std::string, TensorInfo> index_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace samba::io
