// Single-precision GEMM on oneDNN, row-major: C[m, n] = alpha · op(A)[m, k] · op(B)[k, n] + beta ·
// C. Work is split into output tiles whose boundaries depend only on (m, n), each tile computed by
// one single-threaded library call, never splitting k: results are bitwise identical at any
// thread count. A row's bits do not depend on m either (GemmProblem::row_stable).
//
// Mixed precision (GemmProblem::precision = kBf16): A and B are rounded to bf16 (nearest even,
// core/bf16.h), once per operand per call, and multiplied with fp32 accumulation into the fp32 C,
// on oneDNN's bf16 GEMM (AVX512-BF16 or AMX instructions) with the same tiles, so bf16 results
// are bitwise identical at any thread count too. On a CPU without bf16 instructions, or with the
// environment variable ECMOE_BF16_FALLBACK=1, the rounded operands are widened back to fp32 and
// multiplied by the fp32 GEMM: the same products of the same bf16 values (exact in fp32), summed
// in fp32 in the fp32 kernel's order, so the two paths differ only by accumulation order.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "core/precision.h"

namespace ecmoe {

// Optional work on each finished output tile of C: rows [m0, m0 + mm), columns [n0, n0 + nn),
// run right after the tile's GEMM on the thread that computed it, while the tile is in cache
// (e.g. GELU on a pre-activation). It must read and write only that tile's elements (of C or of
// arrays laid out like C), elementwise, so results do not depend on the thread count.
using TileEpilogue = std::function<void(int m0, int n0, int mm, int nn)>;

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
  Precision precision = Precision::kFp32;
  // Optional bf16 copies of A and B (same layout and leading dimension as a and b), e.g. weights
  // converted once a step; used instead of converting a and b. Only read with kBf16.
  const uint16_t* a_bf16 = nullptr;
  const uint16_t* b_bf16 = nullptr;
  const TileEpilogue* epilogue = nullptr;  // optional; must outlive the call
  // Each row of C a function of its own row of op(A), of B and of its index modulo the row tile
  // alone, whatever m is: the last, partial row tile is computed as a whole tile (zero rows
  // appended in a scratch), so no library call sees a row count that depends on m. The
  // libraries' kernels handle few rows differently (oneDNN's AVX2 sgemm: remainders of 1-3 rows,
  // and every row when m is small), which would make a row depend on how many rows share its
  // call: a decoder's expert GEMMs on later tokens (their loads do, docs/causal.md), an MPI rank's
  // rows on the other ranks' count. No effect with trans_a: op(A)'s rows are then A's columns, a
  // model dimension (weight gradients), never a count of tokens.
  bool row_stable = true;
};

// While one lives, this thread's GEMMs run their row tiles as they are, row_stable or not: for
// one-token decoding, whose 1-row problems a whole 128-row tile would make ~100x dearer. Its
// rows then differ from a full forward's in the last bits (docs/causal.md).
class GemmRowsAsGiven {
 public:
  GemmRowsAsGiven();
  ~GemmRowsAsGiven();
  GemmRowsAsGiven(const GemmRowsAsGiven&) = delete;
  GemmRowsAsGiven& operator=(const GemmRowsAsGiven&) = delete;
};

// Convenience for contiguous operands: leading dimensions follow from the shapes.
GemmProblem make_gemm(bool trans_a, bool trans_b, int m, int n, int k, const float* a,
                      const float* b, float* c, float beta = 0.f, float alpha = 1.f);

// p with its precision set: gemm(in_precision(make_gemm(...), precision)).
inline GemmProblem in_precision(GemmProblem p, Precision precision) {
  p.precision = precision;
  return p;
}

void gemm(const GemmProblem& p);
// Many independent problems (e.g. one per expert) share one parallel loop over all their tiles.
void gemm_batch(std::span<const GemmProblem> problems);
// One plain library call, threaded as the library chooses (not thread-count invariant): the
// library's own speed at a shape, for benchmarks.
void gemm_library_direct(const GemmProblem& p);

// Whether bf16 GEMMs run on the CPU's bf16 instructions here: the CPU has them (AVX512-BF16 or
// AMX) and the fallback is not forced: ECMOE_BF16_FALLBACK=1 in the environment (read once, at
// the first call) or set_bf16_fallback(true) (tests switch paths with it).
bool bf16_native_available();  // the CPU alone
bool bf16_native();            // the CPU and the forced fallback
void set_bf16_fallback(bool forced);

struct GemmBackendInfo {
  std::string library;  // e.g. "oneDNN 2.6.3"
  std::string isa;      // instruction set the library dispatches to
};
GemmBackendInfo gemm_backend_info();

}  // namespace ecmoe
