#include "core/tensor_table.h"

#include <algorithm>
#include <cstddef>
#include <sstream>
#include <utility>

#include "core/error.h"

namespace ecmoe {

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t TensorSpec::model_numel() const {
  int64_t n = 1;
  for (int64_t d : model_shape()) n *= d;
  return n;
}

int64_t TensorSpec::shard_offset() const {
  if (!sharded()) return 0;
  return shard_begin * (numel() / shape[0]);
}

std::string TensorSpec::shape_string() const {
  const std::vector<int64_t>& s = model_shape();
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < s.size(); ++i) out << (i ? ", " : "") << s[i];
  out << ']';
  return out.str();
}

int TensorTable::add(const std::string& name, std::vector<int64_t> shape) {
  ECMOE_CHECK(!name.empty(), "tensor name must not be empty");
  ECMOE_CHECK(!contains(name), "tensor '", name, "' declared twice");
  for (int64_t d : shape) ECMOE_CHECK(d > 0, "tensor '", name, "' has a non-positive dimension");
  TensorSpec spec;
  spec.name = name;
  spec.shape = std::move(shape);
  spec.offset = total_;
  total_ += (spec.numel() + 15) / 16 * 16;
  specs_.push_back(std::move(spec));
  index_[name] = int(specs_.size()) - 1;
  return int(specs_.size()) - 1;
}

int TensorTable::add_shard(const std::string& name, std::vector<int64_t> full_shape,
                           int64_t first_row, int64_t rows) {
  ECMOE_CHECK(
      !full_shape.empty() && first_row >= 0 && rows > 0 && first_row + rows <= full_shape[0],
      "tensor '", name, "': rows [", first_row, ", ", first_row + rows,
      ") are not a part of its first dimension");
  std::vector<int64_t> shape = full_shape;
  shape[0] = rows;
  const int index = add(name, std::move(shape));
  specs_[index].full_shape = std::move(full_shape);
  specs_[index].shard_begin = first_row;
  return index;
}

const TensorSpec& TensorTable::spec(const std::string& name) const {
  auto it = index_.find(name);
  ECMOE_CHECK(it != index_.end(), "no tensor named '", name, "'");
  return specs_[it->second];
}

int64_t TensorTable::parameter_count() const {
  int64_t n = 0;
  for (const auto& s : specs_) n += s.numel();
  return n;
}

int64_t TensorTable::model_parameter_count() const {
  int64_t n = 0;
  for (const auto& s : specs_) n += s.model_numel();
  return n;
}

bool TensorTable::has_shards() const {
  return std::any_of(specs_.begin(), specs_.end(), [](const TensorSpec& s) { return s.sharded(); });
}

float* FlatBuffer::get(const std::string& name) { return data_.data() + table_->spec(name).offset; }
const float* FlatBuffer::get(const std::string& name) const {
  return data_.data() + table_->spec(name).offset;
}
std::span<float> FlatBuffer::view(const std::string& name) {
  const auto& s = table_->spec(name);
  return {data_.data() + s.offset, size_t(s.numel())};
}
void FlatBuffer::zero() { std::fill(data_.begin(), data_.end(), 0.f); }

}  // namespace ecmoe
