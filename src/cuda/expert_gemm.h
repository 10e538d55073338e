// The expert GEMMs on the GPU, by cuBLAS: one GEMM per expert over its rows of the plan, as one
// strided-batched call when every expert has the same number of rows (expert choice), else one
// call per non-empty expert. Row-major, as on the CPU (moe/expert_ffn.cpp). Operands are fp32, or
// bf16 under Precision::kBf16; C is fp32 and accumulation is fp32 either way (fp32 mode runs
// cuBLAS's pedantic fp32: no TF32). cuBLAS gives the same bits run to run on one GPU and stream.
#pragma once
#include <cublas_v2.h>

#include <cstdint>

#include "core/precision.h"
#include "cuda/device_plan.h"
#include "nn/grad_write.h"

namespace ecmoe::cuda {

// Row-major C[M, N] = alpha · op(A)[M, K] · op(B)[K, N] + beta · C, `batch` times with the given
// element strides (op(A) = A^T when trans_a: A is stored [K, M]; likewise B). Leading dimensions
// (elements from one stored row to the next) are the packed ones unless given.
struct Gemm {
  bool trans_a = false, trans_b = false;
  int m = 0, n = 0, k = 0;
  const void* a = nullptr;
  const void* b = nullptr;
  float* c = nullptr;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
  int batch = 1;
  float beta = 0.f;
  float alpha = 1.f;
  int lda = 0, ldb = 0, ldc = 0;  // 0: packed (A: K, or M when trans_a; B: N, or K; C: N)
};
void gemm(cublasHandle_t blas, const Gemm& g, Precision precision);
// g's leading dimensions: the given ones, else the packed ones (at least 1: cuBLAS refuses a
// leading dimension of 0, which k = 0 would give).
struct LeadingDims {
  int a, b, c;
};
LeadingDims leading_dims(const Gemm& g);

// Per expert i with rows r_i from slot s0 = plan offset: C[s0.., N] = A[s0.., K] · op(W_i),
// W_i = w + i·K·N elements, op(W_i) = W_i [K, N] or, with trans_w, W_i stored [N, K] transposed.
// (x_in · W1, hidden · W2, d_out · W2^T, d_pre · W1^T.) c_write kAdd: C += instead (beta 1).
void expert_gemm_rows(cublasHandle_t blas, const DevicePlan& plan, bool trans_w, int n, int k,
                      const void* a, const void* w, float* c, Precision precision,
                      nn::GradWrite c_write = nn::GradWrite::kOverwrite);
// Per expert i: dW_i [M, N] += A[s0.., M]^T · B[s0.., N]. (hidden^T · d_out, x_in^T · d_pre.)
// dw_write kOverwrite: dW_i = ... instead (beta 0; an expert without rows gets zeros), for
// gradients that are logically zero (Context::grads' claim).
void expert_gemm_weight_grad(cublasHandle_t blas, const DevicePlan& plan, int m, int n,
                             const void* a, const void* b, float* dw, Precision precision,
                             nn::GradWrite dw_write = nn::GradWrite::kAdd);

}  // namespace ecmoe::cuda
