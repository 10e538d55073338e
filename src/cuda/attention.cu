#include <cmath>
#include <cstddef>

#include "cuda/attention.h"
#include "cuda/cuda_check.h"
#include "cuda/device_math.cuh"
#include "cuda/device_reduce.cuh"
#include "cuda/expert_gemm.h"
#include "cuda/launch.cuh"
#include "cuda/moe_ops.h"

namespace ecmoe::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kRowsPerBlock = kThreads / 32;  // a warp per query row
constexpr int kLanes = nn::detail::kLanes;

// Keys that query i may attend to: [0, visible_keys) (nn/attention.cpp's rule).
__device__ int visible_keys(bool causal, int kv_len, int query) {
  return causal ? min(query + 1, kv_len) : kv_len;
}

// Row r of probs (pair r / T = b·H + h, query r mod T) holds scaled scores; it becomes the
// softmax over the visible keys and 0 elsewhere, as the CPU computes it: the maximum subtracted,
// the exponentials summed in nn/reduce.h's order, then multiplied by the sum's reciprocal. With
// probs16 (bf16 mode), each probability is also written rounded to bf16: the P·V GEMM's operand,
// without a second pass over the [B, H, T, T] array.
__global__ void softmax_kernel(float* probs, uint16_t* probs16, const int* valid_len,
                               int64_t n_rows, int T, int H, bool causal) {
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
  for (int j = lane; j < T; j += 32) {
    const float v = j < n ? p[j] * inv : 0.f;
    p[j] = v;
    if (probs16) probs16[row * T + j] = bf16_bits(v);
  }
}

// The rows of one slice of (sequence, head) pairs (pair_loop below): row r = i·T + query of ds
// is pair i of the slice, whose probabilities start at probs + i·pair_stride and whose sequence
// is b_fixed, or i itself when b_fixed < 0 (a slice of one head over the sequences). dS = P ⊙
// (dP − Σ_j P·dP) over the visible keys, 0 elsewhere, in place over dP (and rounded into ds16
// unless nullptr); the dot in nn/reduce.h's order.
__global__ void softmax_backward_kernel(float* ds, uint16_t* ds16, const float* probs,
                                        int64_t pair_stride, const int* valid_len, int b_fixed,
                                        int64_t n_rows, int T, bool causal) {
  const int lane = threadIdx.x % 32;
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= n_rows) return;
  const int64_t i = row / T;
  const int query = int(row % T), b = b_fixed >= 0 ? b_fixed : int(i);
  const int n = visible_keys(causal, valid_len ? valid_len[b] : T, query);
  const float* p = probs + i * pair_stride + int64_t(query) * T;
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

// Where an operand of pair (b, h) starts: b·per_seq + h·per_head elements from its base.
struct PairStride {
  int64_t per_seq = 0, per_head = 0;
};

// Every GEMM of attention runs once per (sequence, head) pair. cuBLAS batches one stride, so
// the pairs go as `outer` strided-batched calls of `inner` pairs each: a call per head over
// all sequences when there are no more heads than sequences (the usual case: 12 calls instead
// of 64 for 64 sequences of 12 heads), else a call per sequence over its heads.
struct PairLoop {
  bool by_head;
  int outer, inner;
  PairLoop(int B, int H) : by_head(H <= B), outer(by_head ? H : B), inner(by_head ? B : H) {}
  int64_t outer_step(PairStride s) const { return by_head ? s.per_head : s.per_seq; }
  int64_t inner_step(PairStride s) const { return by_head ? s.per_seq : s.per_head; }
  // A scratch array of one slice's pairs: [inner, T, T].
  PairStride slice_scratch(int64_t tt) const {
    return by_head ? PairStride{tt, 0} : PairStride{0, tt};
  }
  // g (operands at the pair (0, 0)) for slice o: its inner pairs batched.
  Gemm slice(Gemm g, int o, PairStride a, PairStride b, PairStride c, bool bf16) const {
    g.a = at(g.a, o * outer_step(a), bf16);
    g.b = at(g.b, o * outer_step(b), bf16);
    g.c += o * outer_step(c);
    g.stride_a = inner_step(a);
    g.stride_b = inner_step(b);
    g.stride_c = inner_step(c);
    g.batch = inner;
    return g;
  }
};

}  // namespace

void attention_forward(float* out, float* probs, const float* qkv, const nn::AttentionConfig& cfg,
                       const int* valid_len, AttentionScratch& scratch, const Context& ctx) {
  const int B = cfg.batch, T = cfg.seq_len, H = cfg.n_heads, hd = cfg.head_dim, d = cfg.model_dim();
  if (B <= 0 || T <= 0 || H <= 0 || hd <= 0) return;
  const bool bf16 = cfg.precision == Precision::kBf16;
  const float scale = 1.f / std::sqrt(float(hd));  // the CPU's constant
  const int64_t seq = int64_t(T) * 3 * d, tt = int64_t(T) * T, rows = int64_t(B) * H * T;
  const PairLoop loop(B, H);
  const PairStride qkv_part{seq, hd}, probs_pair{H * tt, tt}, out_part{int64_t(T) * d, hd};
  const void* x = operand(qkv, int64_t(B) * seq, scratch.qkv16, bf16, ctx.stream);
  Gemm scores;  // scores = scale · Q · Kᵀ [T, T], into probs
  scores.trans_b = true;
  scores.m = T;
  scores.n = T;
  scores.k = hd;
  scores.alpha = scale;
  scores.a = x;
  scores.lda = 3 * d;
  scores.b = at(x, d, bf16);
  scores.ldb = 3 * d;
  scores.c = probs;
  scores.ldc = T;
  for (int o = 0; o < loop.outer; ++o)
    gemm(ctx.blas, loop.slice(scores, o, qkv_part, qkv_part, probs_pair, bf16), cfg.precision);
  if (bf16) scratch.probs16.resize(size_t(B) * H * tt);
  launch(softmax_kernel, blocks_for(rows, kRowsPerBlock), kThreads, 0, ctx.stream, probs,
         bf16 ? scratch.probs16.data() : nullptr, valid_len, rows, T, H, cfg.causal);
  const void* p =
      bf16 ? static_cast<const void*>(scratch.probs16.data()) : static_cast<const void*>(probs);
  Gemm pv;  // out = P · V [T, hd]
  pv.m = T;
  pv.n = hd;
  pv.k = T;
  pv.a = p;
  pv.lda = T;
  pv.b = at(x, 2 * d, bf16);
  pv.ldb = 3 * d;
  pv.c = out;
  pv.ldc = d;
  for (int o = 0; o < loop.outer; ++o)
    gemm(ctx.blas, loop.slice(pv, o, probs_pair, qkv_part, out_part, bf16), cfg.precision);
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* probs,
                        const nn::AttentionConfig& cfg, const int* valid_len,
                        AttentionScratch& scratch, const Context& ctx) {
  const int B = cfg.batch, T = cfg.seq_len, H = cfg.n_heads, hd = cfg.head_dim, d = cfg.model_dim();
  if (B <= 0 || T <= 0 || H <= 0 || hd <= 0) return;
  const bool bf16 = cfg.precision == Precision::kBf16;
  const float scale = 1.f / std::sqrt(float(hd));
  const int64_t seq = int64_t(T) * 3 * d, tt = int64_t(T) * T;
  const PairLoop loop(B, H);
  const PairStride qkv_part{seq, hd}, probs_pair{H * tt, tt}, out_part{int64_t(T) * d, hd};
  const PairStride slice = loop.slice_scratch(tt);
  const int64_t slice_rows = int64_t(loop.inner) * T;
  const void* x = operand(qkv, int64_t(B) * seq, scratch.qkv16, bf16, ctx.stream);
  const void* dy = operand(dout, int64_t(B) * T * d, scratch.dout16, bf16, ctx.stream);
  const void* p = operand(probs, int64_t(B) * H * tt, scratch.probs16, bf16, ctx.stream);
  scratch.dscores.resize(size_t(slice_rows * T));
  if (bf16) scratch.dscores16.resize(size_t(slice_rows * T));
  const void* ds = bf16 ? static_cast<const void*>(scratch.dscores16.data())
                        : static_cast<const void*>(scratch.dscores.data());
  Gemm dv;  // dV += Pᵀ · dO
  dv.trans_a = true;
  dv.m = T;
  dv.n = hd;
  dv.k = T;
  dv.a = p;
  dv.lda = T;
  dv.b = dy;
  dv.ldb = d;
  dv.c = dqkv + 2 * d;
  dv.ldc = 3 * d;
  dv.beta = 1.f;
  Gemm dp;  // dP = dO · Vᵀ, into the slice's scratch
  dp.trans_b = true;
  dp.m = T;
  dp.n = T;
  dp.k = hd;
  dp.a = dy;
  dp.lda = d;
  dp.b = at(x, 2 * d, bf16);
  dp.ldb = 3 * d;
  dp.c = scratch.dscores.data();
  dp.ldc = T;
  Gemm dq;  // dQ += scale · dS · K
  dq.m = T;
  dq.n = hd;
  dq.k = T;
  dq.alpha = scale;
  dq.a = ds;
  dq.lda = T;
  dq.b = at(x, d, bf16);
  dq.ldb = 3 * d;
  dq.c = dqkv;
  dq.ldc = 3 * d;
  dq.beta = 1.f;
  Gemm dk = dq;  // dK += scale · dSᵀ · Q
  dk.trans_a = true;
  dk.b = x;
  dk.c = dqkv + d;
  for (int o = 0; o < loop.outer; ++o) {
    gemm(ctx.blas, loop.slice(dv, o, probs_pair, out_part, qkv_part, bf16), cfg.precision);
    gemm(ctx.blas, loop.slice(dp, o, out_part, qkv_part, slice, bf16), cfg.precision);
    const float* slice_probs = probs + o * loop.outer_step(probs_pair);
    launch(softmax_backward_kernel, blocks_for(slice_rows, kRowsPerBlock), kThreads, 0, ctx.stream,
           scratch.dscores.data(), bf16 ? scratch.dscores16.data() : nullptr, slice_probs,
           loop.inner_step(probs_pair), valid_len, loop.by_head ? -1 : o, slice_rows, T,
           cfg.causal);
    gemm(ctx.blas, loop.slice(dq, o, slice, qkv_part, qkv_part, bf16), cfg.precision);
    gemm(ctx.blas, loop.slice(dk, o, slice, qkv_part, qkv_part, bf16), cfg.precision);
  }
}

}  // namespace ecmoe::cuda
