// A bf16 GEMM with its bias added in the GEMM's epilogue (cuBLASLt, CUBLASLT_EPILOGUE_BIAS):
// row-major C[M, N] = op(A)[M, K] · op(B)[K, N] + bias[N], bf16 operands, fp32 accumulation, fp32
// C and bias. The linear layers' forward (cuda/linear.h) used to write the bias into C and then
// run the GEMM with beta 1, which wrote C twice and read it once; here C is written once. Each
// element is the accumulated product plus the bias, one rounding, as with beta 1 over the
// broadcast bias.
//
// The bias may be left out (nullptr: cuBLASLt's default epilogue) where the output takes one of
// the two other forms (GemmBiasOutput), each saving a pass over it:
// - bf16: D = bf16(product + bias), rounded once as it is written (cuda::to_bf16 of the fp32
//   result gives the same bits), for a consumer that reads only the bf16 copy (the attention's
//   qkv, cuda/nn_backend.cu);
// - a residual: fp32 D = product + residual + bias (cuBLASLt's C, beta 1; the sum in that order),
//   for a sublayer's output projection that lands in the residual stream (and a dense FFN's
//   second GEMM, without a bias): D written once, where an addition after the GEMM read D and the
//   residual and wrote D again.
//
// Per shape and pointer alignment, the descriptors and cuBLASLt's first heuristic answer are made
// once and kept: the same algorithm for the same call, so the same bits run to run (cuBLASLt's
// split-K schemes reduce in a fixed order). The heuristic is told each pointer's actual alignment
// (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*: a weight inside the flat parameter buffer need not sit
// at 256 bytes, cuBLASLt's default assumption). Where cuBLASLt has no algorithm for a call, run()
// returns false and the caller does as before.
#pragma once
#include <cublasLt.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <tuple>

#include "cuda/context.h"
#include "cuda/device_buffer.h"
#include "cuda/expert_gemm.h"

namespace ecmoe::cuda {

struct GemmBiasOutput {
  uint16_t* d16 = nullptr;          // bf16 D [M, N] (ld g.ldc) instead of g.c
  const float* residual = nullptr;  // fp32 [M, N] (ld g.ldc) added (fp32 D only)
};

class GemmBias {
 public:
  GemmBias() = default;
  GemmBias(const GemmBias&) = delete;
  GemmBias& operator=(const GemmBias&) = delete;
  ~GemmBias();

  // g (one GEMM, batch 1, alpha 1, beta 0, bf16 operands a and b) with bias [g.n] added (nullptr:
  // none, only with a bf16 D or a residual), into g.c or as `out` says: queued on ctx.stream,
  // true; false (nothing queued) when cuBLASLt offers no algorithm for it.
  bool run(const Gemm& g, const float* bias, const Context& ctx, const GemmBiasOutput& out = {});

  // How many GEMMs run() has queued (tests: the epilogue path was taken).
  int64_t runs() const { return runs_; }

 private:
  // A shape's descriptors and algorithm; ok false when cuBLASLt had none.
  struct Plan {
    bool ok = false;
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;  // c: C's and D's layout
    cublasLtMatmulAlgo_t algo{};
    std::size_t workspace = 0;
  };
  // (trans_a, trans_b, m, n, k, lda, ldb, ldc, the alignments of a, b, D, the bias and the
  // residual (0: none), whether D is bf16)
  using Key = std::tuple<bool, bool, int, int, int, int, int, int, int, int, int, int, int, bool>;
  Plan& plan_for(const Key& key, const float* bias);

  cublasLtHandle_t lt_ = nullptr;
  DeviceVec<unsigned char> workspace_;
  std::map<Key, Plan> plans_;
  int64_t runs_ = 0;
};

}  // namespace ecmoe::cuda
