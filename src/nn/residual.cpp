// a, b, out are [n]
#include "nn/residual.h"

namespace ecmoe::nn {

void residual_forward(float* out, const float* a, const float* b, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void residual_backward(float* da, float* db, const float* dout, int64_t n) {
  add_inplace(da, dout, n);
  add_inplace(db, dout, n);
}

void add_inplace(float* acc, const float* x, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) acc[i] += x[i];
}

}  // namespace ecmoe::nn
