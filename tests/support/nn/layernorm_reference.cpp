#include "support/nn/layernorm_reference.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace ecmoe::nn {

void layernorm_forward_reference(double* out, const double* inp, const double* gain,
                                 const double* bias, int rows, int dim) {
  for (int r = 0; r < rows; ++r) {
    const double* x = inp + int64_t(r) * dim;
    double mean = 0, var = 0;
    for (int i = 0; i < dim; ++i) mean += x[i] / dim;
    for (int i = 0; i < dim; ++i) var += (x[i] - mean) * (x[i] - mean) / dim;
    const double rstd = 1.0 / std::sqrt(var + double(kLayerNormEps));
    for (int i = 0; i < dim; ++i)
      out[int64_t(r) * dim + i] = (x[i] - mean) * rstd * gain[i] + bias[i];
  }
}

void layernorm_backward_reference(double* dinp, double* dgain, double* dbias, const double* dout,
                                  const double* inp, const double* gain, int rows, int dim) {
  for (int r = 0; r < rows; ++r) {
    const double* x = inp + int64_t(r) * dim;
    const double* dy = dout + int64_t(r) * dim;
    double mean = 0, var = 0;
    for (int i = 0; i < dim; ++i) mean += x[i] / dim;
    for (int i = 0; i < dim; ++i) var += (x[i] - mean) * (x[i] - mean) / dim;
    const double rstd = 1.0 / std::sqrt(var + double(kLayerNormEps));
    // Straight from the chain rule: ∂x̂_j/∂x_i = rstd · (δ_ij − 1/dim − x̂_i x̂_j / dim).
    for (int i = 0; i < dim; ++i) {
      double acc = 0;
      for (int j = 0; j < dim; ++j) {
        const double xi_hat = (x[i] - mean) * rstd, xj_hat = (x[j] - mean) * rstd;
        acc += dy[j] * gain[j] * rstd * ((i == j) - 1.0 / dim - xi_hat * xj_hat / dim);
      }
      dinp[int64_t(r) * dim + i] += acc;
    }
    for (int i = 0; i < dim; ++i) {
      dgain[i] += dy[i] * (x[i] - mean) * rstd;
      dbias[i] += dy[i];
    }
  }
}

}  // namespace ecmoe::nn
