// inp is [rows, in_dim], weight is [in_dim, out_dim], bias is [out_dim]
#include "nn/linear.h"

#include <algorithm>
#include <cstdint>

#include "core/gemm.h"
#include "nn/reduce.h"

namespace ecmoe::nn {

void linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                    const LinearShape& s, Precision precision) {
  if (bias) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < s.rows; ++r)
      std::copy(bias, bias + s.out_dim, out + int64_t(r) * s.out_dim);
  }
  gemm(in_precision(
      make_gemm(false, false, s.rows, s.out_dim, s.in_dim, inp, weight, out, bias ? 1.f : 0.f),
      precision));
}

void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, const LinearShape& s, Precision precision) {
  if (dinp)  // dinp += dout · Wᵀ
    gemm(in_precision(make_gemm(false, true, s.rows, s.in_dim, s.out_dim, dout, weight, dinp, 1.f),
                      precision));
  if (dweight)  // dW += xᵀ · dout
    gemm(in_precision(make_gemm(true, false, s.in_dim, s.out_dim, s.rows, inp, dout, dweight, 1.f),
                      precision));
  if (dbias) add_column_sums(dbias, dout, s.rows, s.out_dim);
}

void add_column_sums(float* dbias, const float* dout, int rows, int cols) {
  const int blocks = detail::column_blocks(cols);
#pragma omp parallel for schedule(static)
  for (int b = 0; b < blocks; ++b) {
    const int c0 = b * detail::kColumnBlock;
    const int c1 = std::min(cols, c0 + detail::kColumnBlock);
    float acc[detail::kColumnBlock] = {};
    for (int r = 0; r < rows; ++r)
      for (int c = c0; c < c1; ++c) acc[c - c0] += dout[int64_t(r) * cols + c];
    for (int c = c0; c < c1; ++c) dbias[c] += acc[c - c0];
  }
}

}  // namespace ecmoe::nn
