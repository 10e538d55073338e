// safetensors writer, validating reader, and flat-buffer checkpoint helpers.
#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <exception>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>
#include <utility>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/input_file.h"
#include "io/json_input.h"

namespace ecmoe {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host would need byte swaps");

namespace {

// The reference implementation refuses larger headers too; it bounds what a corrupt length
// field can make us allocate.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Messages must stay on one line even when they quote bytes from a corrupt header.
std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return "F32";
    case DType::I32:
      return "I32";
    case DType::I64:
      return "I64";
    case DType::U8:
      return "U8";
  }
  return "?";
}

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return 4;
    case DType::I32:
      return 4;
    case DType::I64:
      return 8;
    case DType::U8:
      return 1;
  }
  return 0;
}

bool parse_dtype(const std::string& name, DType* out) {
  for (DType d : {DType::F32, DType::I32, DType::I64, DType::U8}) {
    if (name == dtype_name(d)) {
      *out = d;
      return true;
    }
  }
  return false;
}

// ---- Writer ----

void save_safetensors(const std::string& path, const std::vector<TensorRef>& tensors,
                      const Metadata& metadata) {
  std::vector<TensorSource> sources;
  sources.reserve(tensors.size());
  for (const TensorRef& t : tensors) {
    uint64_t numel = 1;
    for (int64_t d : t.shape) numel *= uint64_t(std::max<int64_t>(d, 0));
    ECMOE_CHECK(numel * dtype_size(t.dtype) == 0 || t.data != nullptr, "cannot write '", path,
                "': tensor '", t.name, "' has no data");
    const std::size_t bytes = numel * dtype_size(t.dtype);
    sources.push_back({t.name, t.dtype, t.shape, [data = t.data, bytes](const ByteSink& sink) {
                         if (bytes > 0) sink(data, bytes);
                       }});
  }
  save_safetensors_streamed(path, sources, metadata);
}

void save_safetensors_streamed(const std::string& path, const std::vector<TensorSource>& tensors,
                               const Metadata& metadata) {
  // ordered_json keeps insertion order, so the header lists tensors in data order like the
  // reference writer does; key order inside an entry matches it too.
  using ordered_json = nlohmann::ordered_json;
  ordered_json header = ordered_json::object();
  if (!metadata.empty()) {
    ordered_json meta = ordered_json::object();
    for (const auto& [key, value] : metadata) meta[key] = value;
    header["__metadata__"] = std::move(meta);
  }
  std::set<std::string> seen;
  std::vector<uint64_t> sizes;
  uint64_t offset = 0;
  for (const TensorSource& t : tensors) {
    ECMOE_CHECK(!t.name.empty(), "cannot write '", path, "': a tensor has an empty name");
    ECMOE_CHECK(t.name != "__metadata__", "cannot write '", path,
                "': '__metadata__' is reserved and cannot name a tensor");
    ECMOE_CHECK(seen.insert(t.name).second, "cannot write '", path, "': tensor '", t.name,
                "' given twice");
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      ECMOE_CHECK(d >= 0, "cannot write '", path, "': tensor '", t.name, "' has shape ",
                  shape_string(t.shape));
      numel *= uint64_t(d);
    }
    const uint64_t bytes = numel * dtype_size(t.dtype);
    ordered_json entry = ordered_json::object();
    entry["dtype"] = dtype_name(t.dtype);
    entry["shape"] = t.shape;
    entry["data_offsets"] = ordered_json::array({offset, offset + bytes});
    header[t.name] = std::move(entry);
    sizes.push_back(bytes);
    offset += bytes;
  }

  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {  // names or metadata that are not UTF-8
    fail("cannot write '", path, "': ", one_line(e.what()));
  }
  // Padding to 8 bytes keeps the data buffer 8-aligned in the file (and in a mapping of it).
  text.append((8 - text.size() % 8) % 8, ' ');
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = uint8_t(uint64_t(text.size()) >> (8 * i));

  write_file_atomically(path, [&](AtomicFileWriter& out) {
    out.write(length, sizeof(length));
    out.write(text);
    for (size_t i = 0; i < tensors.size(); ++i) {
      uint64_t given = 0;
      if (tensors[i].produce)
        tensors[i].produce([&](const void* data, std::size_t bytes) {
          ECMOE_CHECK(given + bytes <= sizes[i], "cannot write '", path, "': tensor '",
                      tensors[i].name, "' produced more than its ", sizes[i], " bytes");
          out.write(data, bytes);
          given += bytes;
        });
      ECMOE_CHECK(given == sizes[i], "cannot write '", path, "': tensor '", tensors[i].name,
                  "' produced ", given, " of its ", sizes[i], " bytes");
    }
  });
}

// ---- Reader ----

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept { *this = std::move(other); }

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    unmap();
    path_ = std::move(other.path_);
    map_ = std::exchange(other.map_, nullptr);
    owned_ = std::move(other.owned_);  // moving a vector keeps its bytes where map_ points
    map_size_ = std::exchange(other.map_size_, 0);
    data_ = std::exchange(other.data_, nullptr);
    data_size_ = std::exchange(other.data_size_, 0);
    metadata_ = std::move(other.metadata_);
    tensors_ = std::move(other.tensors_);
    index_ = std::move(other.index_);
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() { unmap(); }

void SafetensorsFile::unmap() {
  if (map_ && owned_.empty()) ::munmap(const_cast<std::byte*>(map_), map_size_);
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile file;
  file.path_ = path;
  require_regular_file(path, "safetensors file");  // a FIFO would block the open below
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) fail("cannot open '", path, "': ", std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail("cannot open '", path, "': ", std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("cannot open '", path, "': not a regular file");
  }
  const uint64_t size = uint64_t(st.st_size);
  if (size < 8) {
    ::close(fd);
    fail("corrupt safetensors file '", path, "': ", size,
         " bytes, too short for the 8-byte header length");
  }
  // A private read-only mapping: loading a 15 GB checkpoint does not need 15 GB of extra copies,
  // and files are only ever replaced by rename (never rewritten in place), so the mapping is
  // stable while we hold it.
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);
  if (map == MAP_FAILED) fail("cannot map '", path, "': ", std::strerror(err));
  file.map_ = static_cast<const std::byte*>(map);
  file.map_size_ = size;

  uint64_t header_len = 0;
  std::memcpy(&header_len, file.map_, 8);
  file.parse_header(header_len);
  return file;
}

SafetensorsFile SafetensorsFile::from_bytes(const std::string& path,
                                            std::span<const std::byte> bytes) {
  SafetensorsFile file;
  file.path_ = path;
  if (bytes.size() < 8)
    fail("corrupt safetensors file '", path, "': ", bytes.size(),
         " bytes, too short for the 8-byte header length");
  file.owned_.assign(bytes.begin(), bytes.end());
  file.map_ = file.owned_.data();
  file.map_size_ = file.owned_.size();
  uint64_t header_len = 0;
  std::memcpy(&header_len, file.map_, 8);
  file.parse_header(header_len);
  return file;
}

void SafetensorsFile::parse_header(uint64_t header_len) {
  auto bad = [&](const auto&... parts) {
    fail("corrupt safetensors file '", path_, "': ", parts...);
  };
  const uint64_t after = map_size_ - 8;
  if (header_len > after)
    bad("header length ", header_len, " exceeds the ", after, " bytes after it");
  if (header_len > kMaxHeaderBytes)
    bad("header length ", header_len, " exceeds the limit of ", kMaxHeaderBytes, " bytes");
  data_ = map_ + 8 + header_len;
  data_size_ = after - header_len;

  // A valid header is 3 levels deep (header, tensor entry, shape); keys are unique at every level.
  const char* text = reinterpret_cast<const char*>(map_ + 8);
  const nlohmann::json header =
      parse_json(std::string_view(text, header_len),
                 "corrupt safetensors file '" + path_ + "': header", {.max_depth = 3});
  if (!header.is_object()) bad("header is not a JSON object");

  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) bad("__metadata__ is not an object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) bad("__metadata__ value of '", key, "' is not a string");
        metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    if (name.empty()) bad("a tensor has an empty name");
    if (!entry.is_object()) bad("entry of tensor '", name, "' is not an object");
    for (const auto& [key, value] : entry.items()) {
      if (key != "dtype" && key != "shape" && key != "data_offsets")
        bad("tensor '", name, "' has unknown field '", key, "'");
    }
    TensorInfo t;
    t.name = name;

    if (!entry.contains("dtype")) bad("tensor '", name, "' has no dtype");
    const auto& dtype = entry["dtype"];
    if (!dtype.is_string()) bad("tensor '", name, "' has a dtype that is not a string");
    if (!parse_dtype(dtype.get<std::string>(), &t.dtype))
      bad("tensor '", name, "' has unsupported dtype '", dtype.get<std::string>(),
          "' (supported: F32, I32, I64, U8)");

    if (!entry.contains("shape")) bad("tensor '", name, "' has no shape");
    const auto& shape = entry["shape"];
    if (!shape.is_array()) bad("tensor '", name, "' has a shape that is not an array");
    uint64_t numel = 1;
    for (const auto& d : shape) {
      // Dimensions ≥ 2^63 would not fit int64_t; such a shape cannot match any real file anyway.
      if (!d.is_number_unsigned() || d.get<uint64_t>() > uint64_t(INT64_MAX))
        bad("tensor '", name, "' has a shape entry that is not a non-negative integer");
      if (__builtin_mul_overflow(numel, d.get<uint64_t>(), &numel))
        bad("tensor '", name, "' has a shape whose element count overflows");
      t.shape.push_back(int64_t(d.get<uint64_t>()));
    }
    uint64_t span_bytes = 0;
    if (__builtin_mul_overflow(numel, uint64_t(dtype_size(t.dtype)), &span_bytes))
      bad("tensor '", name, "' has a shape whose byte size overflows");
    t.numel = int64_t(numel);

    if (!entry.contains("data_offsets")) bad("tensor '", name, "' has no data_offsets");
    const auto& offsets = entry["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned())
      bad("tensor '", name, "' has data_offsets that are not two non-negative integers");
    t.begin = offsets[0].get<uint64_t>();
    t.end = offsets[1].get<uint64_t>();
    if (t.begin > t.end)
      bad("tensor '", name, "' has data_offsets [", t.begin, ", ", t.end,
          "] that end before they begin");
    if (t.end > data_size_)
      bad("tensor '", name, "' has data_offsets [", t.begin, ", ", t.end,
          "] beyond the data buffer of ", data_size_, " bytes");
    if (t.end - t.begin != span_bytes)
      bad("tensor '", name, "' of dtype ", dtype_name(t.dtype), " and shape ",
          shape_string(t.shape), " needs ", span_bytes, " bytes but data_offsets [", t.begin, ", ",
          t.end, "] span ", t.end - t.begin);
    tensors_.push_back(std::move(t));
  }

  // The tensors must tile the data buffer exactly: no overlap (two tensors aliasing bytes), no
  // gap or tail (bytes nobody accounts for: a truncated or spliced file).
  std::stable_sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected = 0;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const TensorInfo& t = tensors_[i];
    if (t.begin < expected)
      bad("tensors '", tensors_[i - 1].name, "' and '", t.name, "' overlap (bytes ", t.begin,
          " to ", expected, ")");
    if (t.begin > expected)
      bad("gap of ", t.begin - expected, " bytes in the data buffer before tensor '", t.name, "'");
    expected = t.end;
    index_[t.name] = i;
  }
  if (expected != data_size_)
    bad(data_size_ - expected, " bytes after the last tensor (data buffer of ", data_size_,
        " bytes, tensors end at ", expected, ")");
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& t : tensors_) out.push_back(t.name);
  return out;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = index_.find(name);
  ECMOE_CHECK(it != index_.end(), "'", path_, "' has no tensor named '", name, "'");
  return tensors_[it->second];
}

std::span<const std::byte> SafetensorsFile::bytes(const std::string& name) const {
  const TensorInfo& t = info(name);
  return {data_ + t.begin, std::size_t(t.end - t.begin)};
}

void SafetensorsFile::read(const std::string& name, DType dtype,
                           const std::vector<int64_t>& expected_shape, void* dst) const {
  const TensorInfo& t = info(name);
  ECMOE_CHECK(t.dtype == dtype, "'", path_, "': tensor '", name, "' is ", dtype_name(t.dtype),
              ", expected ", dtype_name(dtype));
  ECMOE_CHECK(t.shape == expected_shape, "'", path_, "': tensor '", name, "' has shape ",
              shape_string(t.shape), ", expected ", shape_string(expected_shape));
  if (t.end > t.begin) std::memcpy(dst, data_ + t.begin, t.end - t.begin);
}

// ---- Flat buffers ----

void save_flat_buffers(const std::string& path, const std::vector<FlatBufferSlot>& slots,
                       const Metadata& metadata, const std::vector<TensorRef>& other_tensors) {
  std::vector<TensorRef> refs;
  for (const FlatBufferSlot& slot : slots) {
    ECMOE_CHECK(slot.buffer != nullptr, "cannot write '", path, "': no buffer for prefix '",
                slot.prefix, "'");
    ECMOE_CHECK(!slot.buffer->table().has_shards(), "cannot write '", path, "': buffer '",
                slot.prefix, "' holds expert shards; gather the whole tensors to save them");
    for (const TensorSpec& spec : slot.buffer->table().specs()) {
      refs.push_back(
          {slot.prefix + spec.name, DType::F32, spec.shape, slot.buffer->data() + spec.offset});
    }
  }
  refs.insert(refs.end(), other_tensors.begin(), other_tensors.end());
  save_safetensors(path, refs, metadata);
}

void load_flat_buffers(const SafetensorsFile& file, const std::vector<FlatBufferTarget>& targets,
                       const LoadFlatBuffersOptions& options) {
  const std::string& path = file.path();
  // Check everything before copying anything, so a mismatch leaves the buffers as they were.
  for (const FlatBufferTarget& target : targets) {
    ECMOE_CHECK(target.buffer != nullptr, "loading '", path, "': no buffer for prefix '",
                target.prefix, "'");
    for (const TensorSpec& spec : target.buffer->table().specs()) {
      const std::string name = target.prefix + spec.name;
      ECMOE_CHECK(file.contains(name), "checkpoint '", path, "' lacks tensor '", name, "' (shape ",
                  spec.shape_string(), ")");
      const TensorInfo& t = file.info(name);
      ECMOE_CHECK(t.dtype == DType::F32, "checkpoint '", path, "': tensor '", name, "' is ",
                  dtype_name(t.dtype), ", expected F32");
      ECMOE_CHECK(t.shape == spec.model_shape(), "checkpoint '", path, "': tensor '", name,
                  "' has shape ", shape_string(t.shape), ", expected ", spec.shape_string());
    }
  }
  for (const TensorInfo& t : file.tensors()) {
    bool known = std::find(options.other_tensors.begin(), options.other_tensors.end(), t.name) !=
                 options.other_tensors.end();
    for (const std::string& prefix : options.ignored_prefixes)
      known = known || starts_with(t.name, prefix);
    for (const FlatBufferTarget& target : targets) {
      known = known || (starts_with(t.name, target.prefix) &&
                        target.buffer->table().contains(t.name.substr(target.prefix.size())));
    }
    ECMOE_CHECK(known, "checkpoint '", path, "' has unexpected tensor '", t.name, "' (shape ",
                shape_string(t.shape), "): it belongs to a different model or configuration");
  }
  for (const FlatBufferTarget& target : targets) {
    for (const TensorSpec& spec : target.buffer->table().specs()) {
      float* dst = target.buffer->data() + spec.offset;
      const std::string name = target.prefix + spec.name;
      if (!spec.sharded()) {
        file.read_f32(name, dst, spec.shape);
        continue;
      }
      // A shard's rows are one contiguous run of the whole tensor (split along dimension 0).
      const auto bytes = file.bytes(name);
      std::memcpy(dst, bytes.data() + spec.shard_offset() * int64_t(sizeof(float)),
                  std::size_t(spec.numel()) * sizeof(float));
    }
  }
}

void load_flat_buffer(const SafetensorsFile& file, const std::string& prefix, FlatBuffer& buffer) {
  load_flat_buffers(file, {{prefix, &buffer}});
}

std::string metadata_value(const Metadata& m, const std::string& key, const std::string& file) {
  const auto it = m.find(key);
  ECMOE_CHECK(it != m.end(), file, " lacks the metadata key '", key, "'");
  return it->second;
}

int64_t metadata_int(const Metadata& m, const std::string& key, const std::string& file) {
  const std::string text = metadata_value(m, key, file);
  try {
    std::size_t used = 0;
    const long long v = std::stoll(text, &used);
    if (used == text.size()) return v;
  } catch (const std::exception&) {
  }
  fail(file, ": metadata ", key, " is not an integer: '", text, "'");
}

}  // namespace ecmoe
