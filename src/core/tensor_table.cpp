#include "core/tensor_table.h"

#include <algorithm>
#include <sstream>

#include "core/error.h"

namespace ecmoe {

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorSpec::shape_string() const {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

int TensorTable::add(const std::string& name, std::vector<int64_t> shape) {
  ECMOE_CHECK(!name.empty(), "tensor name must not be empty");
  ECMOE_CHECK(!contains(name), "tensor '", name, "' declared twice");
  for (int64_t d : shape) ECMOE_CHECK(d > 0, "tensor '", name, "' has a non-positive dimension");
  TensorSpec spec{name, std::move(shape), total_};
  total_ += (spec.numel() + 15) / 16 * 16;
  specs_.push_back(std::move(spec));
  index_[name] = int(specs_.size()) - 1;
  return int(specs_.size()) - 1;
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
