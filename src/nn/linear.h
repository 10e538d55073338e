// Fully connected layer y = x · W + b, with W stored [in_dim, out_dim] (row-major, so x · W is a
// plain GEMM), on ecmoe::gemm: bitwise reproducible at any thread count. With Precision::kBf16
// every GEMM takes bf16 operands (fp32 accumulation, fp32 outputs and gradients; core/gemm.h).
#pragma once
#include "core/precision.h"

namespace ecmoe::nn {

struct LinearShape {
  int rows = 0;  // tokens: batch · seq_len
  int in_dim = 0;
  int out_dim = 0;
};

// out: [rows, out_dim]; inp: [rows, in_dim]; weight: [in_dim, out_dim]; bias: [out_dim] or
// nullptr. Saves nothing: backward needs inp and weight, which the caller keeps.
void linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                    const LinearShape& shape, Precision precision = Precision::kFp32);
// Accumulates (+=) into dinp [rows, in_dim], dweight [in_dim, out_dim], dbias [out_dim]. Any of
// the three may be nullptr to skip it (e.g. dinp of a first layer, dbias without a bias).
void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, const LinearShape& shape,
                     Precision precision = Precision::kFp32);

// Sums of dout's rows added to dbias [cols], column blocks owned by one thread each, rows in
// order (deterministic). Shared with the other layers that have a bias.
void add_column_sums(float* dbias, const float* dout, int rows, int cols);

}  // namespace ecmoe::nn
