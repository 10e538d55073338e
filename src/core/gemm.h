// Single-precision GEMM on oneDNN, row-major: C[m, n] = alpha · op(A)[m, k] · op(B)[k, n] + beta ·
// C. Work is split into output tiles whose boundaries depend only on (m, n), each tile computed by
// one single-threaded library call, never splitting k: results are bitwise identical at any
// thread count.
#pragma once
#include <span>
#include <string>

namespace ecmoe {

struct GemmProblem {
  bool trans_a = false;  // A stored [k, m] instead of [m, k]
  bool trans_b = false;  // B stored [n, k] instead of [k, n]
  int m = 0, n = 0, k = 0;
  float alpha = 1.f;
  const float* a = nullptr;
  int lda = 0;
  const float* b = nullptr;
  int ldb = 0;
  float beta = 0.f;
  float* c = nullptr;
  int ldc = 0;
};

// Convenience for contiguous operands: leading dimensions follow from the shapes.
GemmProblem make_gemm(bool trans_a, bool trans_b, int m, int n, int k, const float* a,
                      const float* b, float* c, float beta = 0.f, float alpha = 1.f);

void gemm(const GemmProblem& p);
// Many independent problems (e.g. one per expert) share one parallel loop over all their tiles.
void gemm_batch(std::span<const GemmProblem> problems);
// One plain library call, threaded as the library chooses (not thread-count invariant): the
// library's own speed at a shape, for benchmarks.
void gemm_library_direct(const GemmProblem& p);

struct GemmBackendInfo {
  std::string library;  // e.g. "oneDNN 2.6.3"
  std::string isa;      // instruction set the library dispatches to
};
GemmBackendInfo gemm_backend_info();

}  // namespace ecmoe
