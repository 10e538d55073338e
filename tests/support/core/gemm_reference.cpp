#include "support/core/gemm_reference.h"

#include <cstdint>

namespace ecmoe {

void gemm_reference(const GemmProblem& p) {
  for (int i = 0; i < p.m; ++i)
    for (int j = 0; j < p.n; ++j) {
      double acc = 0;
      for (int l = 0; l < p.k; ++l) {
        const float a = p.trans_a ? p.a[int64_t(l) * p.lda + i] : p.a[int64_t(i) * p.lda + l];
        const float b = p.trans_b ? p.b[int64_t(j) * p.ldb + l] : p.b[int64_t(l) * p.ldb + j];
        acc += double(a) * b;
      }
      float& c = p.c[int64_t(i) * p.ldc + j];
      c = float(p.alpha * acc + (p.beta == 0.f ? 0.0 : double(p.beta) * c));
    }
}

}  // namespace ecmoe
