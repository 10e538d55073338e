// cuBLAS's GemmEx and GemmStridedBatchedEx, column-major as cuBLAS: C = alpha·op(A)·op(B) + beta·C,
// operands fp32 or bf16, products and sums in fp32 (in k order, eight partial sums; under
// CUDAEMU_PERTURB=1 another order, perturb.cpp), C fp32 or bf16. With beta = 0, C is not read (it
// may hold NaN), as cuBLAS promises. And cuBLASLt's matmul for one GEMM, D = alpha·op(A)·op(B) +
// beta·C + bias (CUBLASLT_EPILOGUE_BIAS: one bias element per row of D), by the same loop.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "internal.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
};
struct cublasLtContext {};
struct cublasLtMatmulDescOpaque_t {
  cublasComputeType_t compute;
  cudaDataType_t scale;
  int32_t transa = CUBLAS_OP_N, transb = CUBLAS_OP_N;
  uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;
  int32_t bias_type = -1;  // -1: D's type
};
struct cublasLtMatrixLayoutOpaque_t {
  cudaDataType_t type;
  uint64_t rows, cols;
  int64_t ld;
};
struct cublasLtMatmulPreferenceOpaque_t {
  uint64_t workspace = 0;
  uint32_t alignment[4] = {256, 256, 256, 256};  // A, B, C, D: cuBLASLt's defaults
};

namespace cudaemu {
namespace {

float load(const void* base, cudaDataType_t type, int64_t i) {
  if (type == CUDA_R_32F) return static_cast<const float*>(base)[i];
  return float(static_cast<const __nv_bfloat16*>(base)[i]);
}
void store(void* base, cudaDataType_t type, int64_t i, float v) {
  if (type == CUDA_R_32F)
    static_cast<float*>(base)[i] = v;
  else
    static_cast<__nv_bfloat16*>(base)[i] = __nv_bfloat16(v);
}
size_t element_bytes(cudaDataType_t type) { return type == CUDA_R_32F ? 4 : 2; }

struct GemmArgs {
  cublasOperation_t ta, tb;
  int m, n, k;
  float alpha, beta;
  const void* a;
  cudaDataType_t at;
  int lda;
  long long sa;
  const void* b;
  cudaDataType_t bt;
  int ldb;
  long long sb;
  void* c;
  cudaDataType_t ct;
  int ldc;
  long long sc;
  int batch;
  void* d = nullptr;               // where the result goes (cuBLASLt's D; nullptr: C)
  cudaDataType_t dt = CUDA_R_32F;  // D's type
  const float* bias = nullptr;     // cuBLASLt's bias epilogue: bias[i] added to row i
};

// Eight interleaved partial sums, combined pairwise.
float dot_interleaved(const float* x, const float* y, int k) {
  float part[8] = {};
  int l = 0;
  for (; l + 8 <= k; l += 8)
    for (int u = 0; u < 8; ++u) part[u] = std::fma(x[l + u], y[l + u], part[u]);
  for (; l < k; ++l) part[0] = std::fma(x[l], y[l], part[0]);
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}
// CUDAEMU_PERTURB=1: tiles of 32 summed one by one, the last tile first (a split-K order).
float dot_tiles_reversed(const float* x, const float* y, int k) {
  float total = 0.f;
  for (int t = (k - 1) / 32 * 32; t >= 0; t -= 32) {
    float s = 0.f;
    for (int l = t; l < std::min(k, t + 32); ++l) s = std::fma(x[l], y[l], s);
    total += s;
  }
  return total;
}

void run_gemm(const GemmArgs& g) {
  std::vector<float> a(size_t(g.m) * g.k), bt(size_t(g.n) * g.k);  // op(A) rows, op(B) columns
  float (*const dot_of)(const float*, const float*, int) =
      perturb() ? dot_tiles_reversed : dot_interleaved;
  for (int p = 0; p < g.batch; ++p) {
    const int64_t oa = p * g.sa, ob = p * g.sb, oc = p * g.sc;
    for (int i = 0; i < g.m; ++i)
      for (int l = 0; l < g.k; ++l)
        a[size_t(i) * g.k + l] =
            load(g.a, g.at,
                 oa + (g.ta == CUBLAS_OP_N ? i + int64_t(l) * g.lda : l + int64_t(i) * g.lda));
    for (int j = 0; j < g.n; ++j)
      for (int l = 0; l < g.k; ++l)
        bt[size_t(j) * g.k + l] =
            load(g.b, g.bt,
                 ob + (g.tb == CUBLAS_OP_N ? l + int64_t(j) * g.ldb : j + int64_t(l) * g.ldb));
    for (int j = 0; j < g.n; ++j)
      for (int i = 0; i < g.m; ++i) {
        const float* x = &a[size_t(i) * g.k];
        const float* y = &bt[size_t(j) * g.k];
        const float dot = dot_of(x, y, g.k);
        const int64_t at = oc + i + int64_t(j) * g.ldc;
        float v = g.alpha * dot;
        if (g.beta != 0.f) v += g.beta * load(g.c, g.ct, at);
        if (g.bias) v += g.bias[i];
        if (g.d)
          store(g.d, g.dt, at, v);
        else
          store(g.c, g.ct, at, v);
      }
  }
}

bool operand_type(cudaDataType_t t) { return t == CUDA_R_32F || t == CUDA_R_16BF; }

// cuBLAS's argument checks, then the pointers: every element the GEMM touches must be in one
// device allocation (a GPU would fault).
cublasStatus_t submit_gemm(cublasHandle_t h, const GemmArgs& g, cublasComputeType_t compute) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  const auto op_ok = [](cublasOperation_t o) { return o == CUBLAS_OP_N || o == CUBLAS_OP_T; };
  if (!op_ok(g.ta) || !op_ok(g.tb) || g.m < 0 || g.n < 0 || g.k < 0 || g.batch < 0)
    return CUBLAS_STATUS_INVALID_VALUE;
  const int a_rows = g.ta == CUBLAS_OP_N ? g.m : g.k, b_rows = g.tb == CUBLAS_OP_N ? g.k : g.n;
  if (g.lda < std::max(1, a_rows) || g.ldb < std::max(1, b_rows) || g.ldc < std::max(1, g.m))
    return CUBLAS_STATUS_INVALID_VALUE;
  // GemmEx's table, the rows used here: fp32 in and out (32F, PEDANTIC, FAST_TF32), bf16 in and
  // fp32 or bf16 out (32F, PEDANTIC).
  const bool fp32 = g.at == CUDA_R_32F && g.bt == CUDA_R_32F && g.ct == CUDA_R_32F &&
                    (compute == CUBLAS_COMPUTE_32F || compute == CUBLAS_COMPUTE_32F_PEDANTIC ||
                     compute == CUBLAS_COMPUTE_32F_FAST_TF32);
  const bool bf16 = g.at == CUDA_R_16BF && g.bt == CUDA_R_16BF && operand_type(g.ct) &&
                    (compute == CUBLAS_COMPUTE_32F || compute == CUBLAS_COMPUTE_32F_PEDANTIC);
  if (!fp32 && !bf16) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (g.m == 0 || g.n == 0 || g.batch == 0) return CUBLAS_STATUS_SUCCESS;
  const auto last = [](const void* base, cudaDataType_t t, long long stride, int batch, int rows,
                       int cols, int ld) {
    const int64_t end = int64_t(stride) * (batch - 1) + int64_t(cols - 1) * ld + (rows - 1);
    return static_cast<const char*>(base) + end * int64_t(element_bytes(t));
  };
  const auto inside = [](const void* first, const char* last_element) {
    return is_device(first) && same_allocation(first, last_element);
  };
  const int a_cols = g.ta == CUBLAS_OP_N ? g.k : g.m, b_cols = g.tb == CUBLAS_OP_N ? g.n : g.k;
  if ((g.k > 0 && (!inside(g.a, last(g.a, g.at, g.sa, g.batch, a_rows, a_cols, g.lda)) ||
                   !inside(g.b, last(g.b, g.bt, g.sb, g.batch, b_rows, b_cols, g.ldb)))) ||
      ((g.beta != 0.f || !g.d) && !inside(g.c, last(g.c, g.ct, g.sc, g.batch, g.m, g.n, g.ldc))) ||
      (g.d && !inside(g.d, last(g.d, g.dt, g.sc, g.batch, g.m, g.n, g.ldc))) ||
      (g.bias && !inside(g.bias, last(g.bias, CUDA_R_32F, 0, 1, g.m, 1, 1))))
    fatal("a cuBLAS GEMM's operands are not inside device allocations (" + std::to_string(g.m) +
          "x" + std::to_string(g.n) + "x" + std::to_string(g.k) + ", batch " +
          std::to_string(g.batch) + ")");
  ++counts().gemms;
  enqueue(
      h->stream, [g] { run_gemm(g); }, "a cuBLAS GEMM");
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace
}  // namespace cudaemu

using namespace cudaemu;

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  *handle = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t* stream) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  *stream = handle->stream;
  return CUBLAS_STATUS_SUCCESS;
}
const char* cublasGetStatusString(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    default:
      return "CUBLAS_STATUS_UNKNOWN";
  }
}

// One GEMM: a batch of one.
cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                            cublasOperation_t transb, int m, int n, int k, const void* alpha,
                            const void* A, cudaDataType_t Atype, int lda, const void* B,
                            cudaDataType_t Btype, int ldb, const void* beta, void* C,
                            cudaDataType_t Ctype, int ldc, cublasComputeType_t computeType,
                            cublasGemmAlgo_t algo) {
  return cublasGemmStridedBatchedEx(handle, transa, transb, m, n, k, alpha, A, Atype, lda, 0, B,
                                    Btype, ldb, 0, beta, C, Ctype, ldc, 0, 1, computeType, algo);
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa,
                                          cublasOperation_t transb, int m, int n, int k,
                                          const void* alpha, const void* A, cudaDataType_t Atype,
                                          int lda, long long strideA, const void* B,
                                          cudaDataType_t Btype, int ldb, long long strideB,
                                          const void* beta, void* C, cudaDataType_t Ctype, int ldc,
                                          long long strideC, int batchCount,
                                          cublasComputeType_t computeType, cublasGemmAlgo_t) {
  std::lock_guard lock(api_lock());
  const GemmArgs g{transa,
                   transb,
                   m,
                   n,
                   k,
                   *static_cast<const float*>(alpha),
                   *static_cast<const float*>(beta),
                   A,
                   Atype,
                   lda,
                   strideA,
                   B,
                   Btype,
                   ldb,
                   strideB,
                   C,
                   Ctype,
                   ldc,
                   strideC,
                   batchCount};
  return submit_gemm(handle, g, computeType);
}

// ---- cuBLASLt ---------------------------------------------------------------------------------

namespace cudaemu {
namespace {

// The emulation's one algorithm: a marker and the alignments it was chosen for (A, B, C, D).
constexpr uint64_t kLtAlgo = 0x6c74616c676fULL;  // "ltalgo"

template <typename T>
cublasStatus_t read_attribute(T& field, const void* buf, size_t bytes) {
  if (!buf || bytes != sizeof(T)) return CUBLAS_STATUS_INVALID_VALUE;
  std::memcpy(&field, buf, sizeof(T));
  return CUBLAS_STATUS_SUCCESS;
}

uint32_t alignment_of(const void* p) {
  const auto address = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && address % a != 0) a /= 2;
  return a;
}

// The matmul as GemmArgs (C = D's layout), or a status saying why the emulation cannot run it:
// one GEMM, compute 32F with fp32 scalars, bf16 or fp32 A and B of one type, C and D of one shape
// and one type (fp32, or bf16 with bf16 A and B, as cuBLASLt's table), the default or the bias
// epilogue (an fp32 bias of D's rows, for either D).
cublasStatus_t describe(cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t A,
                        cublasLtMatrixLayout_t B, cublasLtMatrixLayout_t C,
                        cublasLtMatrixLayout_t D, GemmArgs& g) {
  if (!desc || !A || !B || !C || !D) return CUBLAS_STATUS_INVALID_VALUE;
  if (desc->compute != CUBLAS_COMPUTE_32F || desc->scale != CUDA_R_32F || !operand_type(A->type) ||
      A->type != B->type || C->type != D->type || !operand_type(D->type) ||
      (D->type == CUDA_R_16BF && A->type != CUDA_R_16BF))
    return CUBLAS_STATUS_NOT_SUPPORTED;
  const bool bias = desc->epilogue == CUBLASLT_EPILOGUE_BIAS;
  if (!bias && desc->epilogue != CUBLASLT_EPILOGUE_DEFAULT) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (bias && desc->bias_type != -1 && desc->bias_type != CUDA_R_32F)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  const auto op_ok = [](int32_t o) { return o == CUBLAS_OP_N || o == CUBLAS_OP_T; };
  if (!op_ok(desc->transa) || !op_ok(desc->transb)) return CUBLAS_STATUS_INVALID_VALUE;
  const bool ta = desc->transa == CUBLAS_OP_T, tb = desc->transb == CUBLAS_OP_T;
  const uint64_t m = ta ? A->cols : A->rows, k = ta ? A->rows : A->cols;
  const uint64_t kb = tb ? B->cols : B->rows, n = tb ? B->rows : B->cols;
  if (k != kb || C->rows != m || C->cols != n || D->rows != m || D->cols != n || C->ld != D->ld)
    return CUBLAS_STATUS_INVALID_VALUE;
  for (cublasLtMatrixLayout_t l : {A, B, C, D})
    if (l->ld < int64_t(std::max<uint64_t>(1, l->rows))) return CUBLAS_STATUS_INVALID_VALUE;
  g = GemmArgs{};
  g.ta = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  g.tb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  g.m = int(m), g.n = int(n), g.k = int(k);
  g.at = A->type, g.bt = B->type, g.ct = C->type, g.dt = D->type;
  g.lda = int(A->ld), g.ldb = int(B->ld), g.ldc = int(C->ld);
  g.batch = 1;
  if (bias && !desc->bias) return CUBLAS_STATUS_INVALID_VALUE;
  g.bias = bias ? static_cast<const float*>(desc->bias) : nullptr;
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace
}  // namespace cudaemu

cublasStatus_t cublasLtCreate(cublasLtHandle_t* handle) {
  *handle = new cublasLtContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* desc, cublasComputeType_t compute,
                                        cudaDataType_t scale) {
  *desc = new cublasLtMatmulDescOpaque_t{compute, scale};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
  delete desc;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc,
                                              cublasLtMatmulDescAttributes_t attribute,
                                              const void* buf, size_t bytes) {
  if (!desc) return CUBLAS_STATUS_NOT_INITIALIZED;
  switch (attribute) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
      return read_attribute(desc->transa, buf, bytes);
    case CUBLASLT_MATMUL_DESC_TRANSB:
      return read_attribute(desc->transb, buf, bytes);
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
      return read_attribute(desc->epilogue, buf, bytes);
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
      return read_attribute(desc->bias, buf, bytes);
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE:
      return read_attribute(desc->bias_type, buf, bytes);
  }
  return CUBLAS_STATUS_INVALID_VALUE;
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* layout, cudaDataType_t type,
                                          uint64_t rows, uint64_t cols, int64_t ld) {
  *layout = new cublasLtMatrixLayoutOpaque_t{type, rows, cols, ld};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
  delete layout;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref) {
  *pref = new cublasLtMatmulPreferenceOpaque_t;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
  delete pref;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attribute,
                                                    const void* buf, size_t bytes) {
  if (!pref) return CUBLAS_STATUS_NOT_INITIALIZED;
  switch (attribute) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES:
      return read_attribute(pref->workspace, buf, bytes);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: {
      uint32_t a = 0;
      if (const cublasStatus_t s = read_attribute(a, buf, bytes); s != CUBLAS_STATUS_SUCCESS)
        return s;
      if (a == 0 || (a & (a - 1)) != 0) return CUBLAS_STATUS_INVALID_VALUE;
      pref->alignment[attribute - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES] = a;
      return CUBLAS_STATUS_SUCCESS;
    }
  }
  return CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t A, cublasLtMatrixLayout_t B,
                                              cublasLtMatrixLayout_t C, cublasLtMatrixLayout_t D,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t results[],
                                              int* returned) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!pref || requested < 1 || !results || !returned) return CUBLAS_STATUS_INVALID_VALUE;
  *returned = 0;
  GemmArgs g;
  if (const cublasStatus_t s = describe(desc, A, B, C, D, g); s != CUBLAS_STATUS_SUCCESS) return s;
  // As cuBLASLt: a bias less aligned than its elements has no kernel.
  if (g.bias && alignment_of(g.bias) < sizeof(float)) return CUBLAS_STATUS_NOT_SUPPORTED;
  results[0] = cublasLtMatmulHeuristicResult_t{};
  results[0].algo.data[0] = kLtAlgo;
  for (int i = 0; i < 4; ++i) results[0].algo.data[1 + i] = pref->alignment[i];
  results[0].workspaceSize = 0;
  results[0].state = CUBLAS_STATUS_SUCCESS;
  results[0].wavesCount = 1.f;
  *returned = 1;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void* alpha,
                              const void* A, cublasLtMatrixLayout_t Adesc, const void* B,
                              cublasLtMatrixLayout_t Bdesc, const void* beta, const void* C,
                              cublasLtMatrixLayout_t Cdesc, void* D, cublasLtMatrixLayout_t Ddesc,
                              const cublasLtMatmulAlgo_t* algo, void* workspace,
                              size_t workspace_bytes, cudaStream_t stream) {
  std::lock_guard lock(api_lock());
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!algo || algo->data[0] != kLtAlgo) return CUBLAS_STATUS_INVALID_VALUE;
  GemmArgs g;
  if (const cublasStatus_t s = describe(desc, Adesc, Bdesc, Cdesc, Ddesc, g);
      s != CUBLAS_STATUS_SUCCESS)
    return s;
  // The algorithm was chosen for these alignments: a pointer aligned less would fault on a GPU.
  const void* pointers[4] = {A, B, C, D};
  for (int i = 0; i < 4; ++i)
    if (alignment_of(pointers[i]) < algo->data[1 + i])
      fatal("a cuBLASLt matmul's operand " + std::string(1, "ABCD"[i]) + " is aligned to " +
            std::to_string(alignment_of(pointers[i])) + " bytes, its algorithm to " +
            std::to_string(algo->data[1 + i]));
  if (workspace_bytes > 0 && !is_device(workspace)) return CUBLAS_STATUS_INVALID_VALUE;
  g.alpha = *static_cast<const float*>(alpha);
  g.beta = *static_cast<const float*>(beta);
  g.a = A, g.b = B, g.c = const_cast<void*>(C), g.d = D;
  cublasContext on_stream{stream};
  return submit_gemm(&on_stream, g, desc->compute);
}
