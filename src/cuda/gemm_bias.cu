#include <cstddef>
#include <cstdint>

#include "cuda/cuda_check.h"
#include "cuda/gemm_bias.h"

namespace ecmoe::cuda {

namespace {

// The most workspace cuBLASLt may ask for (its Hopper kernels' split-K and scheduling state).
constexpr std::size_t kWorkspaceBytes = std::size_t(32) << 20;

// The largest power of two up to 256 that divides the address (cuBLASLt's alignment preferences).
int alignment_of(const void* p) {
  const auto address = reinterpret_cast<std::uintptr_t>(p);
  int a = 256;
  while (a > 1 && address % std::uintptr_t(a) != 0) a /= 2;
  return a;
}

template <typename T>
void set(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute, const T& value) {
  ECMOE_CUDA_CHECK(cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof value));
}
template <typename T>
void set(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attribute,
         const T& value) {
  ECMOE_CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attribute, &value, sizeof value));
}

}  // namespace

GemmBias::~GemmBias() {
  for (auto& [key, plan] : plans_) {
    if (plan.desc) cublasLtMatmulDescDestroy(plan.desc);
    for (cublasLtMatrixLayout_t layout : {plan.a, plan.b, plan.c})
      if (layout) cublasLtMatrixLayoutDestroy(layout);
  }
  if (lt_) cublasLtDestroy(lt_);
}

// As cuda::gemm: row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, so cuBLASLt's A is
// our B and its B our A; its D [n, m] (column-major, ld ldc) has n rows, one bias element each.
GemmBias::Plan& GemmBias::plan_for(const Key& key, const float* bias) {
  const auto found = plans_.find(key);
  if (found != plans_.end()) return found->second;
  Plan& plan = plans_[key];
  if (!lt_) ECMOE_CUDA_CHECK(cublasLtCreate(&lt_));
  const auto& [trans_a, trans_b, m, n, k, lda, ldb, ldc, align_a, align_b, align_c, align_bias,
               align_residual, bf16_out] = key;
  ECMOE_CUDA_CHECK(cublasLtMatmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  set(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, int32_t(trans_b ? CUBLAS_OP_T : CUBLAS_OP_N));
  set(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, int32_t(trans_a ? CUBLAS_OP_T : CUBLAS_OP_N));
  if (bias) {
    set(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, uint32_t(CUBLASLT_EPILOGUE_BIAS));
    set(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, int32_t(CUDA_R_32F));
    set(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, static_cast<const void*>(bias));
  }
  // Stored (before op) column-major shapes: its A is op(B)ᵀ = [n, k] (trans_b: [k, n]), its B is
  // op(A)ᵀ = [k, m] (trans_a: [m, k]).
  ECMOE_CUDA_CHECK(
      cublasLtMatrixLayoutCreate(&plan.a, CUDA_R_16BF, trans_b ? k : n, trans_b ? n : k, ldb));
  ECMOE_CUDA_CHECK(
      cublasLtMatrixLayoutCreate(&plan.b, CUDA_R_16BF, trans_a ? m : k, trans_a ? k : m, lda));
  // C and D share one layout: fp32 (C the residual, or unread with beta 0), or bf16 (C unread).
  ECMOE_CUDA_CHECK(
      cublasLtMatrixLayoutCreate(&plan.c, bf16_out ? CUDA_R_16BF : CUDA_R_32F, n, m, ldc));
  cublasLtMatmulPreference_t pref = nullptr;
  ECMOE_CUDA_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  set(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t(kWorkspaceBytes));
  set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, uint32_t(align_b));
  set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, uint32_t(align_a));
  set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
      uint32_t(align_residual ? align_residual : align_c));
  set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, uint32_t(align_c));
  (void)align_bias;  // the heuristic reads it from the bias pointer set above
  cublasLtMatmulHeuristicResult_t result{};
  int found_count = 0;
  const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
      lt_, plan.desc, plan.a, plan.b, plan.c, plan.c, pref, 1, &result, &found_count);
  cublasLtMatmulPreferenceDestroy(pref);
  plan.ok = status == CUBLAS_STATUS_SUCCESS && found_count > 0 &&
            result.state == CUBLAS_STATUS_SUCCESS && result.workspaceSize <= kWorkspaceBytes;
  plan.algo = result.algo;
  plan.workspace = result.workspaceSize;
  return plan;
}

bool GemmBias::run(const Gemm& g, const float* bias, const Context& ctx,
                   const GemmBiasOutput& out) {
  if (g.batch != 1 || g.alpha != 1.f || g.beta != 0.f) return false;
  if ((out.d16 && out.residual) || (!bias && !out.d16 && !out.residual)) return false;
  if (g.m == 0 || g.n == 0) return true;
  const auto [lda, ldb, ldc] = leading_dims(g);
  void* d = out.d16 ? static_cast<void*>(out.d16) : static_cast<void*>(g.c);
  const void* c = out.residual ? static_cast<const void*>(out.residual) : d;
  const Key key{g.trans_a,
                g.trans_b,
                g.m,
                g.n,
                g.k,
                lda,
                ldb,
                ldc,
                alignment_of(g.a),
                alignment_of(g.b),
                alignment_of(d),
                bias ? alignment_of(bias) : 0,
                out.residual ? alignment_of(out.residual) : 0,
                out.d16 != nullptr};
  Plan& plan = plan_for(key, bias);
  if (!plan.ok) return false;
  // The workspace grows to what the plans ask for (none on the emulation), once per shape at most.
  if (plan.workspace > workspace_.size()) workspace_.resize(plan.workspace);
  if (bias) set(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, static_cast<const void*>(bias));
  const float alpha = 1.f, beta = out.residual ? 1.f : 0.f;
  const cublasStatus_t status = cublasLtMatmul(
      lt_, plan.desc, &alpha, g.b, plan.a, g.a, plan.b, &beta, c, plan.c, d, plan.c, &plan.algo,
      plan.workspace ? workspace_.data() : nullptr, plan.workspace, ctx.stream);
  // A refusal at launch (nothing queued): this shape takes the old path from now on.
  if (status == CUBLAS_STATUS_NOT_SUPPORTED || status == CUBLAS_STATUS_INVALID_VALUE) {
    plan.ok = false;
    return false;
  }
  check(status, "cublasLtMatmul", __FILE__, __LINE__);
  ++runs_;
  return true;
}

}  // namespace ecmoe::cuda
