#pragma once

#include "nn/layernorm.h"

namespace ecmoe::nn {

// Slow, obvious double-precision versions of nn/layernorm.h for tests (same conventions: backward
// accumulates).
void layernorm_forward_reference(double* out, const double* inp, const double* gain,
                                 const double* bias, int rows, int dim);
void layernorm_backward_reference(double* dinp, double* dgain, double* dbias, const double* dout,
                                  const double* inp, const double* gain, int rows, int dim);

}  // namespace ecmoe::nn
