// One table of {name, shape} for every tensor of a model. Sizes, offsets into one flat buffer,
// checkpoint I/O and test names all come from it, so the tensor list lives in exactly one place.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/aligned.h"

namespace ecmoe {

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;  // what this process stores
  int64_t offset = 0;          // in floats, into the flat buffer; multiple of 16 (64 bytes)
  // Expert parallelism: a tensor split along dimension 0 over processes holds rows
  // [shard_begin, shard_begin + shape[0]) of the model's tensor of shape full_shape. Empty
  // full_shape: the whole tensor (replicated on every process).
  std::vector<int64_t> full_shape;
  int64_t shard_begin = 0;

  int64_t numel() const;
  bool sharded() const { return !full_shape.empty(); }
  const std::vector<int64_t>& model_shape() const { return sharded() ? full_shape : shape; }
  int64_t model_numel() const;  // elements of the whole tensor
  // Floats before this shard in the whole tensor (0 when not sharded).
  int64_t shard_offset() const;
  std::string shape_string() const;  // e.g. "[8, 256, 1024]", the whole tensor's shape
};

class TensorTable {
 public:
  // Adds a tensor; returns its index. Names must be unique.
  int add(const std::string& name, std::vector<int64_t> shape);
  // Adds this process's rows [first_row, first_row + rows) of a tensor of shape full_shape, split
  // along dimension 0 (TensorSpec::full_shape); returns its index.
  int add_shard(const std::string& name, std::vector<int64_t> full_shape, int64_t first_row,
                int64_t rows);
  const std::vector<TensorSpec>& specs() const { return specs_; }
  const TensorSpec& spec(const std::string& name) const;
  bool contains(const std::string& name) const { return index_.count(name) > 0; }
  int64_t total_floats() const { return total_; }  // with alignment padding
  int64_t parameter_count() const;                 // stored here, without padding
  int64_t model_parameter_count() const;           // of the whole model, shards counted whole
  bool has_shards() const;

 private:
  std::vector<TensorSpec> specs_;
  std::unordered_map<std::string, int> index_;
  int64_t total_ = 0;
};

// Storage for every tensor of a table (parameters, gradients, optimizer moments all use one each).
class FlatBuffer {
 public:
  FlatBuffer() = default;
  explicit FlatBuffer(const TensorTable& table)
      : table_(&table), data_(table.total_floats(), 0.f) {}
  float* get(const std::string& name);
  const float* get(const std::string& name) const;
  std::span<float> view(const std::string& name);
  float* data() { return data_.data(); }
  const float* data() const { return data_.data(); }
  int64_t size() const { return int64_t(data_.size()); }
  const TensorTable& table() const { return *table_; }
  void zero();

 private:
  const TensorTable* table_ = nullptr;
  FloatVec data_;
};

}  // namespace ecmoe
