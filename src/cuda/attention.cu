#include <cmath>

#include "cuda/attention.h"
#include "cuda/cuda_check.h"
#include "cuda/device_math.cuh"
#include "cuda/device_reduce.cuh"
#include "cuda/expert_gemm.h"
#include "cuda/moe_ops.h"

namespace ecmoe::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kRowsPerBlock = kThreads / 32;  // a warp per query row
constexpr int kLanes = nn::detail::kLanes;

void check_launch() { ECMOE_CUDA_CHECK(cudaGetLastError()); }

// Keys that query i may attend to: [0, visible_keys) (nn/attention.cpp's rule).
__device__ int visible_keys(bool causal, int kv_len, int query) {
  return causal ? min(query + 1, kv_len) : kv_len;
}

// Row r of probs (pair r / T = b·H + h, query r mod T) holds scaled scores; it becomes the
// softmax over the visible keys and 0 elsewhere, as the CPU computes it: the maximum subtracted,
// the exponentials summed in nn/reduce.h's order, then multiplied by the sum's reciprocal.
__global__ void softmax_kernel(float* probs, const int* valid_len, int64_t n_rows, int T, int H,
                               bool causal) {
  const int lane = threadIdx.x % 32;
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= n_rows) return;  // whole warps leave together
  const int query = int(row % T), b = int(row / T / H);
  const int n = visible_keys(causal, valid_len ? valid_len[b] : T, query);
  float* p = probs + row * T;
  float m = -INFINITY;
  for (int j = lane; j < n; j += 32) m = fmaxf(m, p[j]);
  m = warp_max(m);
  float acc = 0.f;
  if (lane < kLanes)
    for (int j = lane; j < n; j += kLanes) {
      const float e = expf(p[j] - m);
      p[j] = e;
      acc += e;
    }
  const float inv = 1.f / combine_lanes16(acc);
  __syncwarp();  // every lane reads the exponentials lanes 0..15 wrote
  for (int j = lane; j < T; j += 32) p[j] = j < n ? p[j] * inv : 0.f;
}

// One sequence b's rows (h·T + query): dS = P ⊙ (dP − Σ_j P·dP) over the visible keys, 0
// elsewhere, in place over dP (and rounded into ds16 unless nullptr); the dot in nn/reduce.h's
// order.
__global__ void softmax_backward_kernel(float* ds, uint16_t* ds16, const float* probs,
                                        const int* valid_len, int b, int64_t n_rows, int T,
                                        bool causal) {
  const int lane = threadIdx.x % 32;
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= n_rows) return;
  const int n = visible_keys(causal, valid_len ? valid_len[b] : T, int(row % T));
  const float* p = probs + row * T;
  float* d = ds + row * T;
  float acc = 0.f;
  if (lane < kLanes)
    for (int j = lane; j < n; j += kLanes) acc = fmaf(p[j], d[j], acc);
  const float dot = combine_lanes16(acc);  // the reads above are done: their sum is used here
  for (int j = lane; j < T; j += 32) {
    const float v = j < n ? p[j] * (d[j] - dot) : 0.f;
    d[j] = v;
    if (ds16) ds16[row * T + j] = bf16_bits(v);
  }
}

// Element `offset` of an operand array: fp32, or bf16 (2 bytes).
const void* at(const void* base, int64_t offset, bool bf16) {
  return static_cast<const char*>(base) + offset * (bf16 ? 2 : 4);
}

// x [n] as a GEMM operand: itself, or its bf16 copy.
const void* operand(const float* x, int64_t n, DeviceVec<uint16_t>& copy, bool bf16,
                    cudaStream_t stream) {
  if (!bf16) return x;
  copy.resize(size_t(n));
  to_bf16(copy.data(), x, n, stream);
  return copy.data();
}

}  // namespace

void attention_forward(float* out, float* probs, const float* qkv, const nn::AttentionConfig& cfg,
                       const int* valid_len, AttentionScratch& scratch, const Context& ctx) {
  const int B = cfg.batch, T = cfg.seq_len, H = cfg.n_heads, hd = cfg.head_dim, d = cfg.model_dim();
  if (B <= 0 || T <= 0 || H <= 0 || hd <= 0) return;
  const bool bf16 = cfg.precision == Precision::kBf16;
  const float scale = 1.f / std::sqrt(float(hd));  // the CPU's constant
  const int64_t seq = int64_t(T) * 3 * d, tt = int64_t(T) * T, rows = int64_t(B) * H * T;
  const void* x = operand(qkv, int64_t(B) * seq, scratch.qkv16, bf16, ctx.stream);
  for (int b = 0; b < B; ++b) {  // scores_h = scale · Q_h · K_hᵀ, into probs
    Gemm g;
    g.trans_b = true;
    g.m = T;
    g.n = T;
    g.k = hd;
    g.alpha = scale;
    g.a = at(x, b * seq, bf16);
    g.lda = 3 * d;
    g.stride_a = hd;
    g.b = at(x, b * seq + d, bf16);
    g.ldb = 3 * d;
    g.stride_b = hd;
    g.c = probs + b * H * tt;
    g.ldc = T;
    g.stride_c = tt;
    g.batch = H;
    gemm(ctx.blas, g, cfg.precision);
  }
  softmax_kernel<<<blocks_for(rows, kRowsPerBlock), kThreads, 0, ctx.stream>>>(
      probs, valid_len, rows, T, H, cfg.causal);
  check_launch();
  const void* p = operand(probs, int64_t(B) * H * tt, scratch.probs16, bf16, ctx.stream);
  for (int b = 0; b < B; ++b) {  // out_h = P_h · V_h
    Gemm g;
    g.m = T;
    g.n = hd;
    g.k = T;
    g.a = at(p, b * H * tt, bf16);
    g.lda = T;
    g.stride_a = tt;
    g.b = at(x, b * seq + 2 * d, bf16);
    g.ldb = 3 * d;
    g.stride_b = hd;
    g.c = out + int64_t(b) * T * d;
    g.ldc = d;
    g.stride_c = hd;
    g.batch = H;
    gemm(ctx.blas, g, cfg.precision);
  }
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* probs,
                        const nn::AttentionConfig& cfg, const int* valid_len,
                        AttentionScratch& scratch, const Context& ctx) {
  const int B = cfg.batch, T = cfg.seq_len, H = cfg.n_heads, hd = cfg.head_dim, d = cfg.model_dim();
  if (B <= 0 || T <= 0 || H <= 0 || hd <= 0) return;
  const bool bf16 = cfg.precision == Precision::kBf16;
  const float scale = 1.f / std::sqrt(float(hd));
  const int64_t seq = int64_t(T) * 3 * d, tt = int64_t(T) * T, pair_rows = int64_t(H) * T;
  const void* x = operand(qkv, int64_t(B) * seq, scratch.qkv16, bf16, ctx.stream);
  const void* dy = operand(dout, int64_t(B) * T * d, scratch.dout16, bf16, ctx.stream);
  const void* p = operand(probs, int64_t(B) * H * tt, scratch.probs16, bf16, ctx.stream);
  scratch.dscores.resize(size_t(H * tt));
  if (bf16) scratch.dscores16.resize(size_t(H * tt));
  const void* ds = bf16 ? static_cast<const void*>(scratch.dscores16.data())
                        : static_cast<const void*>(scratch.dscores.data());
  for (int b = 0; b < B; ++b) {
    float* dq = dqkv + b * seq;
    {  // dV_h += P_hᵀ · dO_h
      Gemm g;
      g.trans_a = true;
      g.m = T;
      g.n = hd;
      g.k = T;
      g.a = at(p, b * H * tt, bf16);
      g.lda = T;
      g.stride_a = tt;
      g.b = at(dy, int64_t(b) * T * d, bf16);
      g.ldb = d;
      g.stride_b = hd;
      g.c = dq + 2 * d;
      g.ldc = 3 * d;
      g.stride_c = hd;
      g.batch = H;
      g.beta = 1.f;
      gemm(ctx.blas, g, cfg.precision);
    }
    {  // dP_h = dO_h · V_hᵀ
      Gemm g;
      g.trans_b = true;
      g.m = T;
      g.n = T;
      g.k = hd;
      g.a = at(dy, int64_t(b) * T * d, bf16);
      g.lda = d;
      g.stride_a = hd;
      g.b = at(x, b * seq + 2 * d, bf16);
      g.ldb = 3 * d;
      g.stride_b = hd;
      g.c = scratch.dscores.data();
      g.ldc = T;
      g.stride_c = tt;
      g.batch = H;
      gemm(ctx.blas, g, cfg.precision);
    }
    softmax_backward_kernel<<<blocks_for(pair_rows, kRowsPerBlock), kThreads, 0, ctx.stream>>>(
        scratch.dscores.data(), bf16 ? scratch.dscores16.data() : nullptr, probs + b * H * tt,
        valid_len, b, pair_rows, T, cfg.causal);
    check_launch();
    {  // dQ_h += scale · dS_h · K_h
      Gemm g;
      g.m = T;
      g.n = hd;
      g.k = T;
      g.alpha = scale;
      g.a = ds;
      g.lda = T;
      g.stride_a = tt;
      g.b = at(x, b * seq + d, bf16);
      g.ldb = 3 * d;
      g.stride_b = hd;
      g.c = dq;
      g.ldc = 3 * d;
      g.stride_c = hd;
      g.batch = H;
      g.beta = 1.f;
      gemm(ctx.blas, g, cfg.precision);
    }
    {  // dK_h += scale · dS_hᵀ · Q_h
      Gemm g;
      g.trans_a = true;
      g.m = T;
      g.n = hd;
      g.k = T;
      g.alpha = scale;
      g.a = ds;
      g.lda = T;
      g.stride_a = tt;
      g.b = at(x, b * seq, bf16);
      g.ldb = 3 * d;
      g.stride_b = hd;
      g.c = dq + d;
      g.ldc = 3 * d;
      g.stride_c = hd;
      g.batch = H;
      g.beta = 1.f;
      gemm(ctx.blas, g, cfg.precision);
    }
  }
}

}  // namespace ecmoe::cuda
