#pragma once

#include "nn/linear.h"

namespace ecmoe::nn {

// Slow, obvious double-precision versions of nn/linear.h for tests.
void linear_forward_reference(double* out, const double* inp, const double* weight,
                              const double* bias, const LinearShape& shape);
void linear_backward_reference(double* dinp, double* dweight, double* dbias, const double* dout,
                               const double* inp, const double* weight, const LinearShape& shape);

}  // namespace ecmoe::nn
