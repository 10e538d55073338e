#pragma once

#include "core/gemm.h"

namespace ecmoe {

// Slow, obvious reference of gemm() (double accumulation) for tests.
void gemm_reference(const GemmProblem& p);

}  // namespace ecmoe
