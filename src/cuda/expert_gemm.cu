#include <algorithm>
#include <cstddef>

#include "cuda/cuda_check.h"
#include "cuda/expert_gemm.h"

namespace ecmoe::cuda {

namespace {

size_t element_bytes(Precision precision) { return precision == Precision::kBf16 ? 2 : 4; }

// C's beta: 0 to write C, 1 to add to it.
float beta_of(nn::GradWrite c_write) { return c_write == nn::GradWrite::kOverwrite ? 0.f : 1.f; }

const void* advance(const void* p, int64_t elements, Precision precision) {
  return static_cast<const char*>(p) + elements * int64_t(element_bytes(precision));
}

}  // namespace

LeadingDims leading_dims(const Gemm& g) {
  return {g.lda ? g.lda : std::max(1, g.trans_a ? g.m : g.k),
          g.ldb ? g.ldb : std::max(1, g.trans_b ? g.k : g.n), g.ldc ? g.ldc : g.n};
}

void gemm(cublasHandle_t blas, const Gemm& g, Precision precision) {
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  // Row-major C = op(A)·op(B) is column-major C^T = op(B)^T · op(A)^T: cuBLAS gets B first.
  // Column-major views: a row-major [R, C] array is a column-major [C, R] one with ld = C.
  const cublasOperation_t op_b = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_a = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const auto [lda, ldb, ldc] = leading_dims(g);
  const bool bf16 = precision == Precision::kBf16;
  const cudaDataType_t type = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  const cublasComputeType_t compute = bf16 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_PEDANTIC;
  if (g.batch == 1)
    ECMOE_CUDA_CHECK(cublasGemmEx(blas, op_b, op_a, g.n, g.m, g.k, &g.alpha, g.b, type, ldb, g.a,
                                  type, lda, &g.beta, g.c, CUDA_R_32F, ldc, compute,
                                  CUBLAS_GEMM_DEFAULT));
  else
    ECMOE_CUDA_CHECK(cublasGemmStridedBatchedEx(blas, op_b, op_a, g.n, g.m, g.k, &g.alpha, g.b,
                                                type, ldb, g.stride_b, g.a, type, lda, g.stride_a,
                                                &g.beta, g.c, CUDA_R_32F, ldc, g.stride_c, g.batch,
                                                compute, CUBLAS_GEMM_DEFAULT));
}

void expert_gemm_rows(cublasHandle_t blas, const DevicePlan& plan, bool trans_w, int n, int k,
                      const void* a, const void* w, float* c, Precision precision,
                      nn::GradWrite c_write) {
  const int e = plan.n_experts, uniform = plan.uniform_load();
  const int64_t w_stride = int64_t(k) * n;
  const float beta = beta_of(c_write);
  if (uniform > 0) {
    gemm(blas,
         {false, trans_w, uniform, n, k, a, w, c, int64_t(uniform) * k, w_stride,
          int64_t(uniform) * n, e, beta},
         precision);
    return;
  }
  for (int i = 0; i < e; ++i) {
    const int rows = plan.expert_load(i), s0 = plan.expert_offsets_host[i];
    if (rows == 0) continue;
    gemm(blas,
         {false, trans_w, rows, n, k, advance(a, int64_t(s0) * k, precision),
          advance(w, i * w_stride, precision), c + int64_t(s0) * n, 0, 0, 0, 1, beta},
         precision);
  }
}

void expert_gemm_weight_grad(cublasHandle_t blas, const DevicePlan& plan, int m, int n,
                             const void* a, const void* b, float* dw, Precision precision,
                             nn::GradWrite dw_write) {
  const int e = plan.n_experts, uniform = plan.uniform_load();
  const int64_t w_stride = int64_t(m) * n;
  const bool overwrite = dw_write == nn::GradWrite::kOverwrite;
  const float beta = beta_of(dw_write);
  if (uniform > 0) {
    gemm(blas,
         {true, false, m, n, uniform, a, b, dw, int64_t(uniform) * m, int64_t(uniform) * n,
          w_stride, e, beta},
         precision);
    return;
  }
  cudaStream_t stream = nullptr;
  if (overwrite) ECMOE_CUDA_CHECK(cublasGetStream(blas, &stream));
  for (int i = 0; i < e; ++i) {
    const int rows = plan.expert_load(i), s0 = plan.expert_offsets_host[i];
    if (rows == 0) {  // no rows: the gradient gains nothing, and is zero when overwritten
      if (overwrite)
        ECMOE_CUDA_CHECK(
            cudaMemsetAsync(dw + i * w_stride, 0, size_t(w_stride) * sizeof(float), stream));
      continue;
    }
    gemm(blas,
         {true, false, m, n, rows, advance(a, int64_t(s0) * m, precision),
          advance(b, int64_t(s0) * n, precision), dw + i * w_stride, 0, 0, 0, 1, beta},
         precision);
  }
}

}  // namespace ecmoe::cuda
