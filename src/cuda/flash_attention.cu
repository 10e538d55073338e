// qkv16 is [B, T, 3·d] bf16, out is [B, T, d], lse and row_dot are [B, H, T], dqkv is [B, T, 3·d];
// a block owns a 64-row tile of one (sequence, head) pair: blockIdx.x = b·H + h, blockIdx.y the
// tile. Within a block warp w owns rows [16w, 16w + 16) of the tile.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "core/error.h"
#include "cuda/cuda_check.h"
#include "cuda/device_math.cuh"
#include "cuda/flash_attention.h"
#include "cuda/flash_attention_tiles.cuh"
#include "cuda/launch.cuh"
#include "cuda/moe_ops.h"

namespace ecmoe::cuda {

namespace {

using namespace flash;

constexpr unsigned kAll = 0xffffffffu;

// Where one (sequence, head) pair's rows are: row t of its q at q + t·ld, k at + d, v at + 2·d;
// its dO row t at dout + t·d; and how many of its keys are inside the sequence.
struct PairRows {
  int b, h;
  int d;          // H·hd
  int kv_len;     // the sequence's valid length (T without padding)
  int64_t ld;     // 3·d
  int64_t q;      // offset of (b, row 0, head h) in qkv and dqkv
  int64_t o;      // offset of (b, row 0, head h) in out and dout
  int64_t state;  // offset of (b, h, row 0) in lse and row_dot
  __device__ PairRows(int pair, int T, int H, int hd, const int* valid_len)
      : b(pair / H),
        h(pair % H),
        d(H * hd),
        kv_len(valid_len ? valid_len[pair / H] : T),
        ld(3 * int64_t(H) * hd),
        q(int64_t(pair / H) * T * 3 * H * hd + int64_t(pair % H) * hd),
        o(int64_t(pair / H) * T * H * hd + int64_t(pair % H) * hd),
        state(int64_t(pair) * T) {}
};

// The first row of a query-tile block's tile: the last tiles first (causal: the longest first).
__device__ __forceinline__ int query_tile_row0() { return int(gridDim.y - 1 - blockIdx.y) * kTile; }

// ---- forward --------------------------------------------------------------------------------

// Shared memory of the forward: the K and V tiles, every warp's scores [16, 64] (fp32; its
// probabilities, bf16, over them: prob_column), and the tile's unnormalised output [64, HD]
// (fp32).
template <int HD>
struct ForwardSmem {
  static constexpr int k = 0, v = k + kTileBytes<HD>, s = v + kTileBytes<HD>, o = s + kScoreBytes,
                       bytes = o + align128(kTile * kLdOut<HD> * 4);
};

// One query tile against the key tiles it sees. S = scale·Q·Kᵀ goes through shared memory; lanes
// 2r and 2r + 1 of a warp own its row r (32 columns each) for the online softmax: running max m,
// running sum l of exp(s − m) in fp32; the tile's P = exp(s − m) rounded to bf16 enters O += P·V,
// after O's row is rescaled by exp(m_old − m_new). At the end out = O / l and lse = m + log l.
template <int HD>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(float* out, float* lse, const uint16_t* qkv16, const int* valid_len, int T,
                   int H, float scale, bool causal) {
  unsigned char* smem = dynamic_shared_memory();
  using L = ForwardSmem<HD>;
  constexpr int ld = kLdTile<HD>, ldo = kLdOut<HD>;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  bf16* ks = reinterpret_cast<bf16*>(smem + L::k);
  bf16* vs = reinterpret_cast<bf16*>(smem + L::v);
  float* ss = reinterpret_cast<float*>(smem + L::s) + warp * kFrag * kLdScore;  // [16, 64]
  bf16* ps = reinterpret_cast<bf16*>(ss);  // [16, 64] at prob_column, over the scores
  float* os = reinterpret_cast<float*>(smem + L::o) + warp * kFrag * ldo;  // [16, HD]
  const PairRows pr(blockIdx.x, T, H, HD, valid_len);
  const int q0 = query_tile_row0();
  const uint16_t* q = qkv16 + pr.q;

  // Q's tile through the K buffer into this warp's fragments, kept for the whole loop.
  load_tile<HD>(ks, q + q0 * pr.ld, pr.ld, min(kTile, T - q0));
  __syncthreads();
  FragA qf[HD / kFrag];
#pragma unroll
  for (int c = 0; c < HD / kFrag; ++c)
    wmma::load_matrix_sync(qf[c], ks + warp * kFrag * ld + c * kFrag, ld);
  for (int i = lane; i < kFrag * HD; i += 32) os[(i / HD) * ldo + i % HD] = 0.f;
  __syncthreads();  // every warp holds its Q before K's first tile overwrites the buffer

  const int r = lane / 2, c0 = (lane % 2) * 32;  // this lane's row and its 32 columns
  const int query = q0 + warp * kFrag + r;
  float m = -INFINITY, l = 0.f;
  const int key_end = causal ? min(q0 + kTile, pr.kv_len) : pr.kv_len;
  for (int k0 = 0; k0 < key_end; k0 += kTile) {
    load_tile<HD>(ks, q + pr.d + k0 * pr.ld, pr.ld, min(kTile, T - k0));
    load_tile<HD>(vs, q + 2 * pr.d + k0 * pr.ld, pr.ld, min(kTile, T - k0));
    __syncthreads();
    // S [16, 64] = Q_w · Kᵀ (unscaled)
#pragma unroll
    for (int n = 0; n < kTileFrags; ++n) {
      FragAcc acc;
      wmma::fill_fragment(acc, 0.f);
#pragma unroll
      for (int c = 0; c < HD / kFrag; ++c) {
        FragBt kf;
        wmma::load_matrix_sync(kf, ks + n * kFrag * ld + c * kFrag, ld);
        wmma::mma_sync(acc, qf[c], kf, acc);
      }
      wmma::store_matrix_sync(ss + n * kFrag, acc, kLdScore, wmma::mem_row_major);
    }
    __syncwarp();
    // Online softmax over this tile's columns of row r.
    const float* srow = ss + r * kLdScore;
    float mx = -INFINITY;
    for (int j = c0; j < c0 + 32; ++j)
      if (visible(causal, pr.kv_len, T, query, k0 + j)) mx = fmaxf(mx, scale * srow[j]);
    mx = fmaxf(mx, __shfl_xor_sync(kAll, mx, 1));
    const float m_new = fmaxf(m, mx);
    const float m_use = m_new == -INFINITY ? 0.f : m_new;  // no key seen yet: everything 0
    const float alpha = expf(m - m_use);
    float sum = 0.f;
    uint16_t* prow = reinterpret_cast<uint16_t*>(ps) + r * kLdProb;
    for (int j = c0; j < c0 + 32; ++j) {
      const float p =
          visible(causal, pr.kv_len, T, query, k0 + j) ? expf(scale * srow[j] - m_use) : 0.f;
      sum += p;
      prow[prob_column(j)] = bf16_bits(p);  // over srow[j / 2 + (j & 32) / 2], read already
    }
    sum += __shfl_xor_sync(kAll, sum, 1);  // both lanes add the same two values: the same bits
    l = l * alpha + sum;
    m = m_new;
    float* orow = os + r * ldo;
    for (int j = (lane % 2) * (HD / 2); j < (lane % 2 + 1) * (HD / 2); ++j) orow[j] *= alpha;
    __syncwarp();
    // O_w [16, HD] += P [16, 64] · V [64, HD], through the accumulator fragments.
#pragma unroll
    for (int n = 0; n < HD / kFrag; ++n) {
      FragAcc acc;
      wmma::load_matrix_sync(acc, os + n * kFrag, ldo, wmma::mem_row_major);
#pragma unroll
      for (int c = 0; c < kTileFrags; ++c) {
        FragA pf;
        FragB vf;
        wmma::load_matrix_sync(pf, ps + prob_column(c * kFrag), kLdProb);
        wmma::load_matrix_sync(vf, vs + c * kFrag * ld + n * kFrag, ld);
        wmma::mma_sync(acc, pf, vf, acc);
      }
      wmma::store_matrix_sync(os + n * kFrag, acc, ldo, wmma::mem_row_major);
    }
    __syncthreads();  // every warp is done with K and V before the next tiles overwrite them
  }
  __syncwarp();
  // out = O / l, a row at a time over the warp's lanes (coalesced); l == 0 (no visible key) -> 0.
  for (int rr = 0; rr < kFrag; ++rr) {
    const float lr = __shfl_sync(kAll, l, 2 * rr);
    const int qr = q0 + warp * kFrag + rr;
    if (qr >= T) break;
    float* dst = out + pr.o + int64_t(qr) * pr.d;
    for (int j = lane; j < HD; j += 32) dst[j] = lr > 0.f ? os[rr * ldo + j] / lr : 0.f;
  }
  if (lane % 2 == 0 && query < T) lse[pr.state + query] = l > 0.f ? m + logf(l) : INFINITY;
}

// ---- backward -------------------------------------------------------------------------------

// row_dot[b, h, t] = Σ_c bf16(dO)[b, t, h·hd + c] · O[b, t, h·hd + c], c in order: the softmax
// backward's row term (Σ_j P·dP over the row's keys, the CPU's form). A thread per (row, head).
__global__ void row_dot_kernel(float* row_dot, const uint16_t* dout16, const float* out, int T,
                               int H, int hd, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int64_t row = i / H;  // b·T + t
  const int h = int(i % H);
  const int64_t at = row * H * hd + int64_t(h) * hd;
  float acc = 0.f;
  for (int c = 0; c < hd; ++c) acc = fmaf(widen(dout16[at + c]), out[at + c], acc);
  row_dot[(row / T * H + h) * T + row % T] = acc;
}

// Shared memory of both backward kernels: four tiles (the block's own two, K and V or Q and dO,
// and the loop's two), every warp's two score-shaped fp32 arrays (the bf16 P and dS over them,
// row by row), and the loop tile's (or the block's) lse and row_dot.
template <int HD>
struct BackwardSmem {
  static constexpr int own = 0, own2 = own + kTileBytes<HD>, loop = own2 + kTileBytes<HD>,
                       loop2 = loop + kTileBytes<HD>, s = loop2 + kTileBytes<HD>,
                       dp = s + kScoreBytes, lse = dp + kScoreBytes, dot = lse + kRowBytes,
                       bytes = dot + kRowBytes;
};

// The backward kernels' pointers into their shared memory (BackwardSmem's regions): the block's
// own two tiles and the loop's two, this warp's fp32 [16, 64] arrays (scores, dP) and bf16 ones
// (P over the scores, dS over dP, written a row at a time once the warp has read the row), and
// the row values (lse, row_dot) of the query tile.
template <int HD>
struct BackwardViews {
  bf16 *own, *own2, *loop, *loop2, *p16, *ds16;
  float *s, *dp, *lse, *dot;
  __device__ BackwardViews(unsigned char* smem, int warp) {
    using L = BackwardSmem<HD>;
    own = reinterpret_cast<bf16*>(smem + L::own);
    own2 = reinterpret_cast<bf16*>(smem + L::own2);
    loop = reinterpret_cast<bf16*>(smem + L::loop);
    loop2 = reinterpret_cast<bf16*>(smem + L::loop2);
    s = reinterpret_cast<float*>(smem + L::s) + warp * kFrag * kLdScore;
    dp = reinterpret_cast<float*>(smem + L::dp) + warp * kFrag * kLdScore;
    p16 = reinterpret_cast<bf16*>(s);
    ds16 = reinterpret_cast<bf16*>(dp);
    lse = reinterpret_cast<float*>(smem + L::lse);
    dot = reinterpret_cast<float*>(smem + L::dot);
  }
};

// dst[row, col] += factor · acc for this warp's 16 rows (row_ok: those inside the sequence) and
// 16 columns of one fragment, through the warp's fp32 scratch tmp [16, kLdScore].
__device__ __forceinline__ void add_fragment(float* dst, int64_t ld, const FragAcc& acc,
                                             float factor, float* tmp, int rows) {
  wmma::store_matrix_sync(tmp, acc, kLdScore, wmma::mem_row_major);
  __syncwarp();
  for (int i = threadIdx.x % 32; i < kFrag * kFrag; i += 32) {
    const int r = i / kFrag, c = i % kFrag;
    if (r < rows) dst[r * ld + c] += factor * tmp[r * kLdScore + c];
  }
  __syncwarp();
}

// A [16, 64] product of this warp's rows of `a_tile` (row-major, its 16·warp..) with the rows of
// `b_tile` transposed: out = A_w · Bᵀ, stored fp32 to dst [16, kLdScore].
template <int HD>
__device__ __forceinline__ void product_abt(float* dst, const bf16* a_tile, const bf16* b_tile) {
  constexpr int ld = kLdTile<HD>;
  const int warp = threadIdx.x / 32;
#pragma unroll
  for (int n = 0; n < kTileFrags; ++n) {
    FragAcc acc;
    wmma::fill_fragment(acc, 0.f);
#pragma unroll
    for (int c = 0; c < HD / kFrag; ++c) {
      FragA af;
      FragBt bf;
      wmma::load_matrix_sync(af, a_tile + warp * kFrag * ld + c * kFrag, ld);
      wmma::load_matrix_sync(bf, b_tile + n * kFrag * ld + c * kFrag, ld);
      wmma::mma_sync(acc, af, bf, acc);
    }
    wmma::store_matrix_sync(dst + n * kFrag, acc, kLdScore, wmma::mem_row_major);
  }
}

// acc[n] += A [16, 64] (bf16, this warp's, leading dim kLdProb) · B_tile [64, HD] (row-major).
template <int HD>
__device__ __forceinline__ void accumulate_ab(FragAcc (&acc)[HD / kFrag], const bf16* a,
                                              const bf16* b_tile) {
  constexpr int ld = kLdTile<HD>;
#pragma unroll
  for (int n = 0; n < HD / kFrag; ++n)
#pragma unroll
    for (int c = 0; c < kTileFrags; ++c) {
      FragA af;
      FragB bf;
      wmma::load_matrix_sync(af, a + c * kFrag, kLdProb);
      wmma::load_matrix_sync(bf, b_tile + c * kFrag * ld + n * kFrag, ld);
      wmma::mma_sync(acc[n], af, bf, acc[n]);
    }
}

// dK and dV of one key tile: the loop over the query tiles that see it (causal: from its
// diagonal on). Per query tile, in the transposed orientation (rows = this warp's 16 keys):
// Sᵀ = K·Qᵀ, Pᵀ = exp(scale·Sᵀ − lse) over the visible pairs, dPᵀ = V·dOᵀ, dSᵀ = Pᵀ ⊙ (dPᵀ − D);
// dV += bf16(Pᵀ)·dO and dK += bf16(dSᵀ)·Q in fragments. At the end dqkv's k part += scale·dK,
// its v part += dV, for the keys inside the sequence.
template <int HD>
__global__ void __launch_bounds__(kThreads)
    backward_kv_kernel(float* dqkv, const uint16_t* qkv16, const uint16_t* dout16, const float* lse,
                       const float* row_dot, const int* valid_len, int T, int H, float scale,
                       bool causal) {
  unsigned char* smem = dynamic_shared_memory();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const BackwardViews<HD> v(smem, warp);
  bf16 *ks = v.own, *vs = v.own2, *qs = v.loop, *dos = v.loop2, *pt16 = v.p16, *dst16 = v.ds16;
  float *st = v.s, *dpt = v.dp, *lse_s = v.lse, *dot_s = v.dot;
  const PairRows pr(blockIdx.x, T, H, HD, valid_len);
  const int k0 = int(blockIdx.y) * kTile;  // causal: the first tiles have the most queries
  if (k0 >= pr.kv_len) return;             // no query sees these keys: their gradients are 0 (+= 0)
  const uint16_t* q = qkv16 + pr.q;
  load_tile<HD>(ks, q + pr.d + k0 * pr.ld, pr.ld, min(kTile, T - k0));
  load_tile<HD>(vs, q + 2 * pr.d + k0 * pr.ld, pr.ld, min(kTile, T - k0));
  FragAcc dk[HD / kFrag], dv[HD / kFrag];
#pragma unroll
  for (int n = 0; n < HD / kFrag; ++n) {
    wmma::fill_fragment(dk[n], 0.f);
    wmma::fill_fragment(dv[n], 0.f);
  }
  for (int q0 = causal ? k0 : 0; q0 < T; q0 += kTile) {
    __syncthreads();  // the previous tiles are read (and K, V are loaded)
    load_tile<HD>(qs, q + q0 * pr.ld, pr.ld, min(kTile, T - q0));
    load_tile<HD>(dos, dout16 + pr.o + int64_t(q0) * pr.d, pr.d, min(kTile, T - q0));
    for (int i = threadIdx.x; i < kTile; i += kThreads) {
      const bool in = q0 + i < T;
      lse_s[i] = in ? lse[pr.state + q0 + i] : INFINITY;
      dot_s[i] = in ? row_dot[pr.state + q0 + i] : 0.f;
    }
    __syncthreads();
    product_abt<HD>(st, ks, qs);    // Sᵀ [16 keys, 64 queries]
    product_abt<HD>(dpt, vs, dos);  // dPᵀ
    __syncwarp();
    uint16_t* p_bits = reinterpret_cast<uint16_t*>(pt16);
    uint16_t* ds_bits = reinterpret_cast<uint16_t*>(dst16);
    for (int r = 0; r < kFrag; ++r) {  // a row at a time: read into registers, then write over it
      const int key = k0 + warp * kFrag + r;
      uint16_t pb[2], db[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int c = lane + 32 * h, query = q0 + c;
        const float p = visible(causal, pr.kv_len, T, query, key)
                            ? expf(scale * st[r * kLdScore + c] - lse_s[c])
                            : 0.f;
        pb[h] = bf16_bits(p);
        db[h] = bf16_bits(p * (dpt[r * kLdScore + c] - dot_s[c]));
      }
      __syncwarp();  // the warp has read row r of Sᵀ and dPᵀ before P and dS go over it
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        p_bits[r * kLdProb + lane + 32 * h] = pb[h];
        ds_bits[r * kLdProb + lane + 32 * h] = db[h];
      }
    }
    __syncwarp();
    accumulate_ab<HD>(dv, pt16, dos);  // dV += Pᵀ · dO
    accumulate_ab<HD>(dk, dst16, qs);  // dK += dSᵀ · Q
  }
  const int rows = min(kFrag, T - (k0 + warp * kFrag));  // this warp's keys inside the sequence
  float* dk_dst = dqkv + pr.q + pr.d + int64_t(k0 + warp * kFrag) * pr.ld;
#pragma unroll
  for (int n = 0; n < HD / kFrag; ++n) {
    add_fragment(dk_dst + n * kFrag, pr.ld, dk[n], scale, st, rows);
    add_fragment(dk_dst + pr.d + n * kFrag, pr.ld, dv[n], 1.f, st, rows);
  }
}

// dQ of one query tile: the loop over the key tiles it sees (causal: up to its diagonal). Per key
// tile: S = Q·Kᵀ, P = exp(scale·S − lse), dP = dO·Vᵀ, dS = P ⊙ (dP − D), dQ += bf16(dS)·K in
// fragments; at the end dqkv's q part += scale·dQ for the queries inside the sequence.
template <int HD>
__global__ void __launch_bounds__(kThreads)
    backward_q_kernel(float* dqkv, const uint16_t* qkv16, const uint16_t* dout16, const float* lse,
                      const float* row_dot, const int* valid_len, int T, int H, float scale,
                      bool causal) {
  unsigned char* smem = dynamic_shared_memory();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const BackwardViews<HD> v(smem, warp);
  bf16 *qs = v.own, *dos = v.own2, *ks = v.loop, *vs = v.loop2, *ds16 = v.ds16;
  float *ss = v.s, *dps = v.dp, *lse_s = v.lse, *dot_s = v.dot;
  const PairRows pr(blockIdx.x, T, H, HD, valid_len);
  const int q0 = query_tile_row0();
  const uint16_t* q = qkv16 + pr.q;
  load_tile<HD>(qs, q + q0 * pr.ld, pr.ld, min(kTile, T - q0));
  load_tile<HD>(dos, dout16 + pr.o + int64_t(q0) * pr.d, pr.d, min(kTile, T - q0));
  for (int i = threadIdx.x; i < kTile; i += kThreads) {
    const bool in = q0 + i < T;
    lse_s[i] = in ? lse[pr.state + q0 + i] : INFINITY;
    dot_s[i] = in ? row_dot[pr.state + q0 + i] : 0.f;
  }
  FragAcc dq[HD / kFrag];
#pragma unroll
  for (int n = 0; n < HD / kFrag; ++n) wmma::fill_fragment(dq[n], 0.f);
  const int key_end = causal ? min(q0 + kTile, pr.kv_len) : pr.kv_len;
  for (int k0 = 0; k0 < key_end; k0 += kTile) {
    __syncthreads();  // the previous K, V tiles are read (and Q, dO, lse, D are loaded)
    load_tile<HD>(ks, q + pr.d + k0 * pr.ld, pr.ld, min(kTile, T - k0));
    load_tile<HD>(vs, q + 2 * pr.d + k0 * pr.ld, pr.ld, min(kTile, T - k0));
    __syncthreads();
    product_abt<HD>(ss, qs, ks);    // S [16 queries, 64 keys]
    product_abt<HD>(dps, dos, vs);  // dP
    __syncwarp();
    uint16_t* ds_bits = reinterpret_cast<uint16_t*>(ds16);
    for (int r = 0; r < kFrag; ++r) {  // a row at a time: read into registers, then write over it
      const int row = warp * kFrag + r;
      uint16_t db[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int c = lane + 32 * h;
        const float p = visible(causal, pr.kv_len, T, q0 + row, k0 + c)
                            ? expf(scale * ss[r * kLdScore + c] - lse_s[row])
                            : 0.f;
        db[h] = bf16_bits(p * (dps[r * kLdScore + c] - dot_s[row]));
      }
      __syncwarp();  // the warp has read row r of dP before dS goes over it
#pragma unroll
      for (int h = 0; h < 2; ++h) ds_bits[r * kLdProb + lane + 32 * h] = db[h];
    }
    __syncwarp();
    accumulate_ab<HD>(dq, ds16, ks);  // dQ += dS · K
  }
  const int rows = min(kFrag, T - (q0 + warp * kFrag));
  float* dq_dst = dqkv + pr.q + int64_t(q0 + warp * kFrag) * pr.ld;
#pragma unroll
  for (int n = 0; n < HD / kFrag; ++n)
    add_fragment(dq_dst + n * kFrag, pr.ld, dq[n], scale, ss, rows);
}

// ---- host -----------------------------------------------------------------------------------

// Dynamic shared memory beyond 48 KB needs the kernel's opt-in, once per kernel; and the
// multiprocessor's L1 is asked to be shared memory as far as it goes (carveout 100%), since the
// blocks' tiles decide how many of them fit at once (docs/cuda.md, the launch check's table).
template <typename Kernel>
bool allow_shared_memory(Kernel kernel, int bytes) {
  ECMOE_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  ECMOE_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, 100));
  return true;
}

// f(std::integral_constant<int, HD>) for the supported head dims: 16, 32, ..., 128.
template <typename F, int... Steps>
bool call_with_head_dim(int hd, F& f, std::integer_sequence<int, Steps...>) {
  return ((hd == (Steps + 1) * kFrag ? (f(std::integral_constant<int, (Steps + 1) * kFrag>{}), true)
                                     : false) ||
          ...);
}
template <typename F>
void with_head_dim(int hd, F&& f) {
  if (!call_with_head_dim(hd, f, std::make_integer_sequence<int, 128 / kFrag>{}))
    fail("flash attention: head_dim ", hd, " is not a multiple of 16 up to 128");
}

dim3 grid_of(const nn::AttentionConfig& cfg) {
  return dim3(unsigned(cfg.batch * cfg.n_heads), unsigned((cfg.seq_len + kTile - 1) / kTile));
}

float scale_of(const nn::AttentionConfig& cfg) { return 1.f / std::sqrt(float(cfg.head_dim)); }

}  // namespace

bool flash_attention_supports(const nn::AttentionConfig& cfg) {
  return cfg.precision == Precision::kBf16 && cfg.head_dim > 0 && cfg.head_dim % 16 == 0 &&
         cfg.head_dim <= 128;
}

void flash_attention_forward(float* out, float* lse, const float* qkv,
                             const nn::AttentionConfig& cfg, const int* valid_len,
                             FlashAttentionScratch& scratch, const Context& ctx) {
  if (cfg.batch <= 0 || cfg.seq_len <= 0 || cfg.n_heads <= 0) return;
  const int64_t n = int64_t(cfg.batch) * cfg.seq_len * 3 * cfg.model_dim();
  scratch.qkv16.resize(size_t(n));
  to_bf16(scratch.qkv16.data(), qkv, n, ctx.stream);
  with_head_dim(cfg.head_dim, [&](auto hd) {
    constexpr int HD = decltype(hd)::value;
    constexpr int bytes = ForwardSmem<HD>::bytes;
    static const bool ready = allow_shared_memory(forward_kernel<HD>, bytes);
    (void)ready;
    launch(forward_kernel<HD>, grid_of(cfg), kThreads, bytes, ctx.stream, out, lse,
           scratch.qkv16.data(), valid_len, cfg.seq_len, cfg.n_heads, scale_of(cfg), cfg.causal);
  });
}

void flash_attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                              const float* lse, const nn::AttentionConfig& cfg,
                              const int* valid_len, FlashAttentionScratch& scratch,
                              const Context& ctx) {
  if (cfg.batch <= 0 || cfg.seq_len <= 0 || cfg.n_heads <= 0) return;
  const int64_t rows = int64_t(cfg.batch) * cfg.seq_len, d = cfg.model_dim();
  scratch.qkv16.resize(size_t(rows * 3 * d));
  to_bf16(scratch.qkv16.data(), qkv, rows * 3 * d, ctx.stream);
  scratch.dout16.resize(size_t(rows * d));
  to_bf16(scratch.dout16.data(), dout, rows * d, ctx.stream);
  const int64_t n_dot = rows * cfg.n_heads;
  scratch.row_dot.resize(size_t(n_dot));
  launch(row_dot_kernel, blocks_for(n_dot, 256), 256, 0, ctx.stream, scratch.row_dot.data(),
         scratch.dout16.data(), out, cfg.seq_len, cfg.n_heads, cfg.head_dim, n_dot);
  with_head_dim(cfg.head_dim, [&](auto hd) {
    constexpr int HD = decltype(hd)::value;
    constexpr int bytes = BackwardSmem<HD>::bytes;
    static const bool ready = allow_shared_memory(backward_kv_kernel<HD>, bytes) &&
                              allow_shared_memory(backward_q_kernel<HD>, bytes);
    (void)ready;
    launch(backward_kv_kernel<HD>, grid_of(cfg), kThreads, bytes, ctx.stream, dqkv,
           scratch.qkv16.data(), scratch.dout16.data(), lse, scratch.row_dot.data(), valid_len,
           cfg.seq_len, cfg.n_heads, scale_of(cfg), cfg.causal);
    launch(backward_q_kernel<HD>, grid_of(cfg), kThreads, bytes, ctx.stream, dqkv,
           scratch.qkv16.data(), scratch.dout16.data(), lse, scratch.row_dot.data(), valid_len,
           cfg.seq_len, cfg.n_heads, scale_of(cfg), cfg.causal);
  });
}

}  // namespace ecmoe::cuda
