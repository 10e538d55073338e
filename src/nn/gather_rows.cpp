// dst, src are [rows, dim]; rows [m] are distinct row indices
#include "nn/gather_rows.h"

#include <cstdint>
#include <cstring>

namespace ecmoe::nn {

void gather_rows(float* dst, const float* src, const int* rows, int m, int dim) {
  const int64_t d = dim;
#pragma omp parallel for schedule(static)
  for (int j = 0; j < m; ++j) std::memcpy(dst + j * d, src + rows[j] * d, d * sizeof(float));
}

void scatter_add_rows(float* dst, const float* src, const int* rows, int m, int dim) {
  const int64_t d = dim;
#pragma omp parallel for schedule(static)
  for (int j = 0; j < m; ++j) {
    float* out = dst + rows[j] * d;
    const float* in = src + j * d;
    for (int64_t i = 0; i < d; ++i) out[i] += in[i];
  }
}

}  // namespace ecmoe::nn
