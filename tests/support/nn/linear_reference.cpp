#include "support/nn/linear_reference.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace ecmoe::nn {

void linear_forward_reference(double* out, const double* inp, const double* weight,
                              const double* bias, const LinearShape& s) {
  for (int r = 0; r < s.rows; ++r)
    for (int o = 0; o < s.out_dim; ++o) {
      double acc = bias ? bias[o] : 0.0;
      for (int i = 0; i < s.in_dim; ++i)
        acc += inp[int64_t(r) * s.in_dim + i] * weight[int64_t(i) * s.out_dim + o];
      out[int64_t(r) * s.out_dim + o] = acc;
    }
}

void linear_backward_reference(double* dinp, double* dweight, double* dbias, const double* dout,
                               const double* inp, const double* weight, const LinearShape& s) {
  for (int r = 0; r < s.rows; ++r)
    for (int o = 0; o < s.out_dim; ++o) {
      const double g = dout[int64_t(r) * s.out_dim + o];
      for (int i = 0; i < s.in_dim; ++i) {
        if (dinp) dinp[int64_t(r) * s.in_dim + i] += g * weight[int64_t(i) * s.out_dim + o];
        if (dweight) dweight[int64_t(i) * s.out_dim + o] += g * inp[int64_t(r) * s.in_dim + i];
      }
      if (dbias) dbias[o] += g;
    }
}

}  // namespace ecmoe::nn
