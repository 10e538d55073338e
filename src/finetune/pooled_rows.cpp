// Gather on the backend, one copy each way, the rows placed on the other side.
#include "finetune/pooled_rows.h"

#include <algorithm>
#include <cstddef>

#include "core/error.h"

namespace ecmoe::finetune {

const float* PooledRows::to_host(nn::Backend& be, const float* hidden, const int32_t* valid_len,
                                 Pooling pooling, const HeadShape& shape) {
  const int B = shape.batch, T = shape.seq_len, d = shape.dim;
  const int64_t Nd = int64_t(B) * T * d;
  rows_.clear();
  for (int b = 0; b < B; ++b) {
    const int n = pooled_length(pooling, valid_len, b, T);
    for (int t = 0; t < n; ++t) rows_.push_back(b * T + t);
  }
  const int m = int(rows_.size());
  rows_on_backend_.upload(be, rows_);
  packed_.resize(be, int64_t(m) * d);
  be.gather_rows(packed_.data(), hidden, rows_on_backend_.data(), m, d);
  packed_host_.resize(int64_t(m) * d);
  be.download(packed_host_.data(), packed_.data(), std::size_t(m) * d * sizeof(float));
  host_.assign(Nd, 0.f);
  for (int j = 0; j < m; ++j)
    std::copy_n(packed_host_.data() + int64_t(j) * d, d, host_.data() + int64_t(rows_[j]) * d);
  return host_.data();
}

const float* PooledRows::to_backend(nn::Backend& be, const float* grad, const HeadShape& shape) {
  const int d = shape.dim;
  const int64_t Nd = int64_t(shape.batch) * shape.seq_len * d;
  ECMOE_CHECK(rows_on_backend_.backend() == &be && !rows_.empty() && rows_.back() * int64_t(d) < Nd,
              "pooled rows: to_backend needs the rows of a to_host of this shape first");
  const int m = int(rows_.size());
  packed_host_.resize(int64_t(m) * d);
  for (int j = 0; j < m; ++j)
    std::copy_n(grad + int64_t(rows_[j]) * d, d, packed_host_.data() + int64_t(j) * d);
  packed_.resize(be, int64_t(m) * d);
  be.upload(packed_.data(), packed_host_.data(), std::size_t(m) * d * sizeof(float));
  full_.resize(be, Nd);
  be.fill(full_.data(), Nd, 0.f);
  be.scatter_add_rows(full_.data(), packed_.data(), rows_on_backend_.data(), m, d);
  return full_.data();
}

}  // namespace ecmoe::finetune
