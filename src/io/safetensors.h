// Checkpoints in the safetensors format (readable by the Python `safetensors` package and by
// PyTorch tooling), with a reader that validates every header field before any byte is used: a
// corrupt checkpoint must fail loudly, never load silently. Format notes:
// docs/checkpoint-format.md.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/tensor_table.h"

namespace ecmoe {

// The element types a checkpoint may hold: F32 for parameters and optimizer state, the integer
// types for bookkeeping (step counters, RNG state, data-loader positions).
enum class DType { F32, I32, I64, U8 };

const char* dtype_name(DType dtype);                    // "F32", ...
std::size_t dtype_size(DType dtype);                    // bytes per element
bool parse_dtype(const std::string& name, DType* out);  // false for names we do not support

using Metadata = std::map<std::string, std::string>;  // the header's "__metadata__"

// A metadata value that must be there, and one that must be an integer; `file` names the file in
// the one-line errors, e.g. "checkpoint 'runs/a/checkpoint.safetensors' lacks the metadata key
// 'config'".
std::string metadata_value(const Metadata& m, const std::string& key, const std::string& file);
int64_t metadata_int(const Metadata& m, const std::string& key, const std::string& file);

// A tensor to write: the bytes at `data` (numel × dtype_size, C order) are not copied.
struct TensorRef {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // [] is a scalar (one element)
  const void* data = nullptr;
};

// Writes `tensors` (stored contiguously, in the given order) and `metadata` to `path`, atomically
// (io/atomic_file.h). Names must be unique, non-empty and not "__metadata__".
void save_safetensors(const std::string& path, const std::vector<TensorRef>& tensors,
                      const Metadata& metadata = {});

// Takes a tensor's bytes while a file is written, in one or more pieces.
using ByteSink = std::function<void(const void* data, std::size_t bytes)>;

// A tensor whose bytes are produced while the file is written, e.g. gathered piece by piece from
// the processes that hold its parts: `produce` must give the sink exactly numel × dtype_size
// bytes, in order (a different count is an error and the file is not replaced).
struct TensorSource {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::function<void(const ByteSink&)> produce;
};

// save_safetensors for produced tensors: the header from names and shapes, then each tensor's
// produce() in order, straight into the file.
void save_safetensors_streamed(const std::string& path, const std::vector<TensorSource>& tensors,
                               const Metadata& metadata = {});

// One tensor of an opened file; offsets are bytes from the start of the data buffer.
struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  int64_t numel = 0;
  uint64_t begin = 0, end = 0;
};

// A validated, memory-mapped safetensors file. Opening checks the whole header (sizes, JSON,
// dtypes, shapes against byte spans, bounds, contiguity, duplicates); every later accessor can
// then trust it. Errors are ecmoe::Error: one line naming the file and the problem.
class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path);
  // The same validation of a file's bytes already in memory (copied; `path` names them in
  // errors), e.g. for the fuzz targets (tests/fuzz).
  static SafetensorsFile from_bytes(const std::string& path, std::span<const std::byte> bytes);
  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  const Metadata& metadata() const { return metadata_; }
  // In data order (by offset), which for files we write is the order they were saved in.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return index_.count(name) > 0; }
  const TensorInfo& info(const std::string& name) const;  // throws if absent
  DType dtype(const std::string& name) const { return info(name).dtype; }
  const std::vector<int64_t>& shape(const std::string& name) const { return info(name).shape; }
  std::span<const std::byte> bytes(const std::string& name) const;

  // Copies a tensor into `dst` after checking its dtype and that its shape is `expected_shape`.
  void read(const std::string& name, DType dtype, const std::vector<int64_t>& expected_shape,
            void* dst) const;
  void read_f32(const std::string& name, float* dst,
                const std::vector<int64_t>& expected_shape) const {
    read(name, DType::F32, expected_shape, dst);
  }
  void read_i64(const std::string& name, int64_t* dst,
                const std::vector<int64_t>& expected_shape) const {
    read(name, DType::I64, expected_shape, dst);
  }

 private:
  SafetensorsFile() = default;
  void parse_header(uint64_t header_len);
  void unmap();

  std::string path_;
  const std::byte* map_ = nullptr;  // the whole file: mapped, or owned_'s bytes
  std::vector<std::byte> owned_;    // from_bytes' copy (empty for a mapped file)
  std::size_t map_size_ = 0;
  const std::byte* data_ = nullptr;  // the data buffer, after the header
  std::size_t data_size_ = 0;
  Metadata metadata_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, std::size_t> index_;
};

// ---- Flat buffers (core/tensor_table.h) in a safetensors file ----

// A flat buffer stored under `prefix` + tensor name, e.g. "" for parameters, "adam_m." and
// "adam_v." for optimizer moments.
struct FlatBufferSlot {
  std::string prefix;
  const FlatBuffer* buffer = nullptr;
};

// Writes every tensor of every slot (F32, table order, padding dropped), then `other_tensors`
// (bookkeeping such as the step), atomically. Tables with expert shards (TensorSpec::sharded) are
// refused: their whole tensors must be gathered first (train/checkpoint.h does).
void save_flat_buffers(const std::string& path, const std::vector<FlatBufferSlot>& slots,
                       const Metadata& metadata = {},
                       const std::vector<TensorRef>& other_tensors = {});

struct LoadFlatBuffersOptions {
  // Full names of tensors the caller reads itself (e.g. "step"); they are not "unexpected".
  std::vector<std::string> other_tensors = {};
  // Tensors whose names start with one of these are skipped, e.g. {"adam_m.", "adam_v."} to load
  // only the parameters of a training checkpoint for evaluation.
  std::vector<std::string> ignored_prefixes = {};
};

// A flat buffer to fill from `prefix` + tensor name.
struct FlatBufferTarget {
  std::string prefix;
  FlatBuffer* buffer = nullptr;
};

// Fills each target's buffer from the file. Every tensor of each table must be present, F32 and
// of the table's shape (the whole tensor's for a shard, which copies its own rows); a file tensor
// that belongs to no target, is not in options.other_tensors and matches no ignored prefix is an
// error too (a checkpoint of another model must not half-load). The first problem found is
// reported. Padding is left untouched.
void load_flat_buffers(const SafetensorsFile& file, const std::vector<FlatBufferTarget>& targets,
                       const LoadFlatBuffersOptions& options = {});
// One buffer; the file must hold exactly its tensors (under `prefix`), nothing else.
void load_flat_buffer(const SafetensorsFile& file, const std::string& prefix, FlatBuffer& buffer);

}  // namespace ecmoe
