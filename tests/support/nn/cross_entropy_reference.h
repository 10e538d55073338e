#pragma once

#include "nn/cross_entropy.h"

namespace ecmoe::nn {

// Slow, obvious double-precision versions of nn/cross_entropy.h for tests.
CrossEntropyResult cross_entropy_forward_reference(const double* logits, const int* targets,
                                                   int rows, int vocab);
void cross_entropy_backward_reference(double* dlogits, const double* logits, const int* targets,
                                      double dloss, int rows, int vocab);

}  // namespace ecmoe::nn
