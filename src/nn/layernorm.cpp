// inp is [rows, dim], gain and bias are [dim]
#include "nn/layernorm.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "nn/reduce.h"

namespace ecmoe::nn {

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* gain,
                       const float* bias, int rows, int dim) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    const float* x = inp + int64_t(r) * dim;
    float* y = out + int64_t(r) * dim;
    // Two passes (mean, then squared deviations) rather than E[x²] − E[x]², which cancels badly
    // when the mean is large against the spread.
    const float m = detail::sum(x, dim) / float(dim);
    const float var = detail::sum_squared_deviation(x, m, dim) / float(dim);
    const float s = 1.f / std::sqrt(var + kLayerNormEps);
    for (int i = 0; i < dim; ++i) y[i] = (x[i] - m) * s * gain[i] + bias[i];
    mean[r] = m;
    rstd[r] = s;
  }
}

void layernorm_backward(float* dinp, float* dgain, float* dbias, const float* dout,
                        const float* inp, const float* gain, const float* mean, const float* rstd,
                        int rows, int dim) {
  // dinp: every row on its own. With n = x̂ and g = dout·gain:
  // dx = rstd · (g − mean(g) − x̂ · mean(g · x̂)).
#pragma omp parallel
  {
    std::vector<float> norm(dim), dnorm(dim);
#pragma omp for schedule(static)
    for (int r = 0; r < rows; ++r) {
      const float* x = inp + int64_t(r) * dim;
      const float* dy = dout + int64_t(r) * dim;
      float* dx = dinp + int64_t(r) * dim;
      for (int i = 0; i < dim; ++i) {
        norm[i] = (x[i] - mean[r]) * rstd[r];
        dnorm[i] = dy[i] * gain[i];
      }
      const float dnorm_mean = detail::sum(dnorm.data(), dim) / float(dim);
      const float dnorm_norm_mean = detail::dot(dnorm.data(), norm.data(), dim) / float(dim);
      for (int i = 0; i < dim; ++i)
        dx[i] += rstd[r] * (dnorm[i] - dnorm_mean - norm[i] * dnorm_norm_mean);
    }
  }
  // dgain, dbias: sums over rows, one column block per thread, rows in order.
  const int blocks = detail::column_blocks(dim);
#pragma omp parallel for schedule(static)
  for (int b = 0; b < blocks; ++b) {
    const int c0 = b * detail::kColumnBlock;
    const int c1 = std::min(dim, c0 + detail::kColumnBlock);
    float dg[detail::kColumnBlock] = {}, db[detail::kColumnBlock] = {};
    for (int r = 0; r < rows; ++r) {
      const float* x = inp + int64_t(r) * dim;
      const float* dy = dout + int64_t(r) * dim;
      for (int c = c0; c < c1; ++c) {
        dg[c - c0] += dy[c] * ((x[c] - mean[r]) * rstd[r]);
        db[c - c0] += dy[c];
      }
    }
    for (int c = c0; c < c1; ++c) {
      dgain[c] += dg[c - c0];
      dbias[c] += db[c - c0];
    }
  }
}

}  // namespace ecmoe::nn
