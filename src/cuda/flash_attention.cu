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
#include "cuda/mma_fragments.cuh"
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

// The start of a step of a double-buffered loop: when there is a next step, its tiles start
// loading into the other buffer (free since the loop's last barrier); this step's are waited for,
// and the block's barrier makes them every thread's.
template <typename StartNext>
__device__ __forceinline__ void begin_step(bool has_next, StartNext&& start_next) {
  if (has_next) {
    start_next();
    wait_async_copies<1>();
  } else {
    wait_async_copies<0>();
  }
  __syncthreads();
}

// ---- forward --------------------------------------------------------------------------------

// Shared memory of the forward: two K and V tiles, the loop's current one and the next one in
// flight (Q's tile passes through the first K buffer before).
template <int HD>
struct ForwardSmem {
  static constexpr int kv = kTileBytes<HD> * 2;  // a K tile and its V tile
  static constexpr int k = 0, v = kTileBytes<HD>, bytes = 2 * kv;
};

// The rows of a warp's fragments: a lane holds elements of rows g and g + 8 of its warp's 16
// (cuda/mma_fragments.cuh), columns 8j + 2t and 8j + 2t + 1 of result fragment j.
struct FragmentRows {
  int g, t;
  __device__ FragmentRows() : g(threadIdx.x % 32 / 4), t(threadIdx.x % 4) {}
  // Row of element e (0..3) of a result fragment, within the warp's 16.
  __device__ int row(int e) const { return g + 8 * (e / 2); }
  // Column of element e of result fragment j.
  __device__ int col(int j, int e) const { return kCols * j + 2 * t + (e & 1); }
};

// The max (or sum) of v over the 4 lanes of a quad: the lanes that hold one row of a fragment.
// (a + b) + (c + d) in every lane of the quad: the same bits in each.
__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(kAll, v, 1));
  return fmaxf(v, __shfl_xor_sync(kAll, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(kAll, v, 1);
  return v + __shfl_xor_sync(kAll, v, 2);
}

// One query tile against the key tiles it sees, everything of a warp's 16 rows in registers
// (FlashAttention-2's layout): per key tile S [16, 64] = Q_w·Kᵀ in 8 result fragments, the
// online softmax on them (running max m and sum l per row, in fp32; each lane sums its own
// columns, the quad adds them at the end), P = exp(scale·s − m) rounded to bf16 straight into the
// A fragments of O += P·V, O [16, HD] in HD/8 result fragments rescaled by exp(m_old − m_new)
// first. At the end out = O / l and lse = m + log l.
template <int HD>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(float* out, float* lse, const uint16_t* qkv16, const int* valid_len, int T,
                   int H, float scale, bool causal) {
  unsigned char* smem = dynamic_shared_memory();
  using L = ForwardSmem<HD>;
  constexpr int ld = kLdTile<HD>, kOut = HD / kCols, kDepth = HD / kKeyStep;
  constexpr int kScoreFrags = kTile / kCols;
  const int warp = threadIdx.x / 32;
  const FragmentRows fr;
  const PairRows pr(blockIdx.x, T, H, HD, valid_len);
  const int q0 = query_tile_row0();
  const int row0 = q0 + warp * kRows;  // this warp's first query
  const uint16_t* q = qkv16 + pr.q;
  // Buffer b's K and V tiles; the tile of keys [k0, k0 + 64) goes to buffer (k0 / 64) % 2.
  const auto k_buffer = [&](int b) { return reinterpret_cast<uint16_t*>(smem + b * L::kv + L::k); };
  const auto v_buffer = [&](int b) { return reinterpret_cast<uint16_t*>(smem + b * L::kv + L::v); };
  const auto start_loading = [&](int k0) {  // the K and V tiles of keys [k0, k0 + 64)
    const int b = (k0 / kTile) % 2;
    load_tile_async<HD>(k_buffer(b), q + pr.d + k0 * pr.ld, pr.ld, min(kTile, T - k0));
    load_tile_async<HD>(v_buffer(b), q + 2 * pr.d + k0 * pr.ld, pr.ld, min(kTile, T - k0));
    commit_async_copies();
  };

  // Q's tile through the first K buffer into this warp's A fragments, kept for the whole loop.
  load_tile<HD>(k_buffer(0), q + q0 * pr.ld, pr.ld, min(kTile, T - q0));
  __syncthreads();
  uint32_t qa[kDepth][4];
#pragma unroll
  for (int c = 0; c < kDepth; ++c)
    mma::load_a(qa[c], k_buffer(0) + warp * kRows * ld + c * kKeyStep, ld);
  __syncthreads();  // every warp holds its Q before K's first tile overwrites the buffer

  float o[kOut][4];
#pragma unroll
  for (int n = 0; n < kOut; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[n][e] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};  // rows g and g + 8
  const int key_end = causal ? min(q0 + kTile, pr.kv_len) : pr.kv_len;
  if (key_end > 0) start_loading(0);
  for (int k0 = 0; k0 < key_end; k0 += kTile) {
    begin_step(k0 + kTile < key_end, [&] { start_loading(k0 + kTile); });
    const uint16_t* ks = k_buffer((k0 / kTile) % 2);
    const uint16_t* vs = v_buffer((k0 / kTile) % 2);
    // S [16, 64] = Q_w · Kᵀ (unscaled)
    float s[kScoreFrags][4];
#pragma unroll
    for (int j = 0; j < kScoreFrags; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[j][e] = 0.f;
#pragma unroll
    for (int c = 0; c < kDepth; ++c)
#pragma unroll
      for (int j = 0; j < kScoreFrags; ++j) {
        uint32_t b[2];
        mma::load_b_transposed(b, ks + j * kCols * ld + c * kKeyStep, ld);
        mma::mma_bf16(s[j], qa[c], b);
      }
    // Online softmax: scaled scores (-inf where not visible), the rows' new max over the quad.
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < kScoreFrags; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const bool seen = visible(causal, pr.kv_len, T, row0 + fr.row(e), k0 + fr.col(j, e));
        s[j][e] = seen ? scale * s[j][e] : -INFINITY;
        mx[e / 2] = fmaxf(mx[e / 2], s[j][e]);
      }
    float alpha[2], m_use[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float m_new = fmaxf(m[h], quad_max(mx[h]));
      m_use[h] = m_new == -INFINITY ? 0.f : m_new;  // no key seen yet: everything 0
      alpha[h] = expf(m[h] - m_use[h]);
      m[h] = m_new;
    }
    float sum[2] = {0.f, 0.f};
#pragma unroll
    for (int j = 0; j < kScoreFrags; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float p = s[j][e] == -INFINITY ? 0.f : expf(s[j][e] - m_use[e / 2]);
        sum[e / 2] += p;
        s[j][e] = p;
      }
#pragma unroll
    for (int h = 0; h < 2; ++h) l[h] = l[h] * alpha[h] + sum[h];
#pragma unroll
    for (int n = 0; n < kOut; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[n][e] *= alpha[e / 2];
        // O_w [16, HD] += bf16(P) [16, 64] · V [64, HD]: P's result fragments 2kk and 2kk + 1 are
        // the A fragment of keys [16kk, 16kk + 16).
#pragma unroll
    for (int kk = 0; kk < kTile / kKeyStep; ++kk) {
      uint32_t pa[4];
      mma::a_from_results(pa, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
      for (int n = 0; n < kOut; n += 2) {
        uint32_t b[2], b_next[2];
        mma::load_b_pair(b, b_next, vs + kk * kKeyStep * ld + n * kCols, ld);
        mma::mma_bf16(o[n], pa, b);
        mma::mma_bf16(o[n + 1], pa, b_next);
      }
    }
    __syncthreads();  // every warp is done with K and V before the next tiles overwrite them
  }
  // out = O / l (l over the quad's columns); l == 0 (no visible key) -> 0.
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float lr = quad_sum(l[h]);
    const int query = row0 + fr.g + 8 * h;
    if (query >= T) continue;
    float* dst = out + pr.o + int64_t(query) * pr.d + 2 * fr.t;
#pragma unroll
    for (int n = 0; n < kOut; ++n)
      *reinterpret_cast<float2*>(dst + n * kCols) =
          lr > 0.f ? make_float2(o[n][2 * h] / lr, o[n][2 * h + 1] / lr) : make_float2(0.f, 0.f);
    if (fr.t == 0) lse[pr.state + query] = lr > 0.f ? m[h] + logf(lr) : INFINITY;
  }
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

// Shared memory of both backward kernels: the block's own two tiles (K and V, or Q and dO), then
// two buffers for the loop, the current step's and the next one's in flight, each with its two
// tiles (Q and dO, or K and V) and, for dK and dV, its queries' lse and row_dot.
template <int HD>
struct BackwardSmem {
  static constexpr int own = 0, own2 = kTileBytes<HD>, loop = 2 * kTileBytes<HD>;
  static constexpr int per_loop = 2 * kTileBytes<HD> + 2 * kRowBytes;     // one loop buffer
  static constexpr int loop2 = kTileBytes<HD>, lse = 2 * kTileBytes<HD>,  // within a loop buffer
      dot = lse + kRowBytes;
  static constexpr int bytes = loop + 2 * per_loop;
};

// Loop buffer b of a backward kernel's shared memory (BackwardSmem): its two tiles and row values.
template <int HD>
struct LoopBuffer {
  uint16_t *tile, *tile2;
  float *lse, *dot;
  __device__ LoopBuffer(unsigned char* smem, int b) {
    using L = BackwardSmem<HD>;
    unsigned char* at = smem + L::loop + b * L::per_loop;
    tile = reinterpret_cast<uint16_t*>(at);
    tile2 = reinterpret_cast<uint16_t*>(at + L::loop2);
    lse = reinterpret_cast<float*>(at + L::lse);
    dot = reinterpret_cast<float*>(at + L::dot);
  }
};

// The backward kernels take each 64-row tile of the loop in two halves of 32 rows (kHalf), so
// that a warp holds [16, 32] scores and gradients at a time instead of [16, 64]: fewer
// registers, which at head_dim 64 lets 12 warps share a multiprocessor instead of 8 (dK, dV).
constexpr int kHalf = kTile / 2;
constexpr int kHalfFrags = kHalf / kCols;

// The two [16, 32] products of a backward half-step, in result fragments: x = A_w·Bᵀ and
// y = C_w·Dᵀ, with A_w, C_w this warp's 16 rows of the tiles a and c, B and D 32 rows of the
// tiles b and d (from the pointers given).
template <int HD>
__device__ __forceinline__ void two_products(float (&x)[kHalfFrags][4], float (&y)[kHalfFrags][4],
                                             const uint16_t* a, const uint16_t* b,
                                             const uint16_t* c, const uint16_t* d) {
  constexpr int ld = kLdTile<HD>;
  const int warp = threadIdx.x / 32;
#pragma unroll
  for (int j = 0; j < kHalfFrags; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) x[j][e] = y[j][e] = 0.f;
#pragma unroll
  for (int k = 0; k < HD / kKeyStep; ++k) {
    uint32_t af[4], cf[4];
    mma::load_a(af, a + warp * kRows * ld + k * kKeyStep, ld);
    mma::load_a(cf, c + warp * kRows * ld + k * kKeyStep, ld);
#pragma unroll
    for (int j = 0; j < kHalfFrags; ++j) {
      uint32_t bf[2];
      mma::load_b_transposed(bf, b + j * kCols * ld + k * kKeyStep, ld);
      mma::mma_bf16(x[j], af, bf);
      mma::load_b_transposed(bf, d + j * kCols * ld + k * kKeyStep, ld);
      mma::mma_bf16(y[j], cf, bf);
    }
  }
}

// acc [16, HD] += bf16(A) [16, 32] · tile [32, HD] (32 rows from the pointer given), A in result
// fragments (a_from_results).
template <int HD>
__device__ __forceinline__ void accumulate_product(float (&acc)[HD / kCols][4],
                                                   const float (&a)[kHalfFrags][4],
                                                   const uint16_t* tile) {
  constexpr int ld = kLdTile<HD>;
#pragma unroll
  for (int kk = 0; kk < kHalf / kKeyStep; ++kk) {
    uint32_t af[4];
    mma::a_from_results(af, a[2 * kk], a[2 * kk + 1]);
#pragma unroll
    for (int n = 0; n < HD / kCols; n += 2) {
      uint32_t bf[2], bf_next[2];
      mma::load_b_pair(bf, bf_next, tile + kk * kKeyStep * ld + n * kCols, ld);
      mma::mma_bf16(acc[n], af, bf);
      mma::mma_bf16(acc[n + 1], af, bf_next);
    }
  }
}

// dst[row, col] += factor · acc (kStore: dst[row, col] = 0 + factor · acc, the bits of adding
// into a zero-filled dst, -0 included, without reading it) for this warp's 16 rows, row r at
// dst + r·ld (those below `rows`, the ones inside the sequence), and every column, each element
// by the one lane that holds it. A compile-time choice: a runtime flag here raised the dK/dV
// kernel at head_dim 64 from 168 to 210 registers.
template <int HD, bool kStore>
__device__ __forceinline__ void add_rows(float* dst, int64_t ld, const float (&acc)[HD / kCols][4],
                                         float factor, int rows) {
  const FragmentRows fr;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = fr.g + 8 * h;
    if (r >= rows) continue;
    float* row = dst + r * ld + 2 * fr.t;
#pragma unroll
    for (int n = 0; n < HD / kCols; ++n) {
      const float a = factor * acc[n][2 * h], b = factor * acc[n][2 * h + 1];
      if constexpr (kStore) {
        row[n * kCols] = 0.f + a;
        row[n * kCols + 1] = 0.f + b;
      } else {
        row[n * kCols] += a;
        row[n * kCols + 1] += b;
      }
    }
  }
}

// dK and dV of one key tile: the loop over the query tiles that see it (causal: from its
// diagonal on). Per query tile, in the transposed orientation (rows = this warp's 16 keys), all
// in registers: Sᵀ = K·Qᵀ, Pᵀ = exp(scale·Sᵀ − lse) over the visible pairs, dPᵀ = V·dOᵀ,
// dSᵀ = Pᵀ ⊙ (dPᵀ − D); dV += bf16(Pᵀ)·dO and dK += bf16(dSᵀ)·Q. At the end dqkv's k part
// += scale·dK, its v part += dV, for the keys inside the sequence (kStore: = rather than +=).
template <int HD, bool kStore>
__global__ void __launch_bounds__(kThreads)
    backward_kv_kernel(float* dqkv, const uint16_t* qkv16, const uint16_t* dout16, const float* lse,
                       const float* row_dot, const int* valid_len, int T, int H, float scale,
                       bool causal) {
  unsigned char* smem = dynamic_shared_memory();
  using L = BackwardSmem<HD>;
  constexpr int kOut = HD / kCols;
  const int warp = threadIdx.x / 32;
  const FragmentRows fr;
  uint16_t* ks = reinterpret_cast<uint16_t*>(smem + L::own);
  uint16_t* vs = reinterpret_cast<uint16_t*>(smem + L::own2);
  const PairRows pr(blockIdx.x, T, H, HD, valid_len);
  const int k0 = int(blockIdx.y) * kTile;  // causal: the first tiles have the most queries
  // Keys no query sees have gradient 0: nothing to add, zeros to store (no loop below).
  if (!kStore && k0 >= pr.kv_len) return;
  const int key0 = k0 + warp * kRows;  // this warp's first key
  const uint16_t* q = qkv16 + pr.q;
  // The Q and dO tiles of queries [q0, q0 + 64) start loading into loop buffer b; their lse and
  // row_dot are stored there.
  const auto start_loading = [&](int q0, int b) {
    const LoopBuffer<HD> buf(smem, b);
    load_tile_async<HD>(buf.tile, q + q0 * pr.ld, pr.ld, min(kTile, T - q0));
    load_tile_async<HD>(buf.tile2, dout16 + pr.o + int64_t(q0) * pr.d, pr.d, min(kTile, T - q0));
    commit_async_copies();
    for (int i = threadIdx.x; i < kTile; i += kThreads) {
      const bool in = q0 + i < T;
      buf.lse[i] = in ? lse[pr.state + q0 + i] : INFINITY;
      buf.dot[i] = in ? row_dot[pr.state + q0 + i] : 0.f;
    }
  };
  load_tile<HD>(ks, q + pr.d + k0 * pr.ld, pr.ld, min(kTile, T - k0));
  load_tile<HD>(vs, q + 2 * pr.d + k0 * pr.ld, pr.ld, min(kTile, T - k0));
  float dk[kOut][4], dv[kOut][4];
#pragma unroll
  for (int n = 0; n < kOut; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[n][e] = dv[n][e] = 0.f;
  const int first = causal ? k0 : 0, end = k0 < pr.kv_len ? T : first;
  if (first < end) start_loading(first, 0);
  for (int q0 = first, step = 0; q0 < end; q0 += kTile, ++step) {
    // This step's tiles and rows (and K, V) are in, the next query tile's loading.
    begin_step(q0 + kTile < end, [&] { start_loading(q0 + kTile, (step + 1) % 2); });
    const LoopBuffer<HD> buf(smem, step % 2);
    const uint16_t *qs = buf.tile, *dos = buf.tile2;
    const float *lse_s = buf.lse, *dot_s = buf.dot;
#pragma unroll 1                                 // one half's registers at a time
    for (int c0 = 0; c0 < kTile; c0 += kHalf) {  // queries [q0 + c0, q0 + c0 + 32)
      const uint16_t *qh = qs + c0 * kLdTile<HD>, *doh = dos + c0 * kLdTile<HD>;
      float pt[kHalfFrags][4], dst[kHalfFrags][4];  // Sᵀ then Pᵀ; dPᵀ then dSᵀ
      two_products<HD>(pt, dst, ks, qh, vs, doh);
#pragma unroll
      for (int j = 0; j < kHalfFrags; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int c = c0 + fr.col(j, e);
          const float p = visible(causal, pr.kv_len, T, q0 + c, key0 + fr.row(e))
                              ? expf(scale * pt[j][e] - lse_s[c])
                              : 0.f;
          pt[j][e] = p;
          dst[j][e] = p * (dst[j][e] - dot_s[c]);
        }
      accumulate_product<HD>(dv, pt, doh);  // dV += Pᵀ · dO
      accumulate_product<HD>(dk, dst, qh);  // dK += dSᵀ · Q
    }
    __syncthreads();  // every warp is done with this buffer before it is loaded again
  }
  const int rows = min(kRows, T - key0);  // this warp's keys inside the sequence
  float* dk_dst = dqkv + pr.q + pr.d + int64_t(key0) * pr.ld;
  add_rows<HD, kStore>(dk_dst, pr.ld, dk, scale, rows);
  add_rows<HD, kStore>(dk_dst + pr.d, pr.ld, dv, 1.f, rows);
}

// dQ of one query tile: the loop over the key tiles it sees (causal: up to its diagonal). Per key
// tile, in registers: S = Q·Kᵀ, P = exp(scale·S − lse), dP = dO·Vᵀ, dS = P ⊙ (dP − D),
// dQ += bf16(dS)·K; at the end dqkv's q part += scale·dQ for the queries inside the sequence
// (kStore: = rather than +=).
template <int HD, bool kStore>
__global__ void __launch_bounds__(kThreads)
    backward_q_kernel(float* dqkv, const uint16_t* qkv16, const uint16_t* dout16, const float* lse,
                      const float* row_dot, const int* valid_len, int T, int H, float scale,
                      bool causal) {
  unsigned char* smem = dynamic_shared_memory();
  using L = BackwardSmem<HD>;
  constexpr int kOut = HD / kCols;
  const int warp = threadIdx.x / 32;
  const FragmentRows fr;
  uint16_t* qs = reinterpret_cast<uint16_t*>(smem + L::own);
  uint16_t* dos = reinterpret_cast<uint16_t*>(smem + L::own2);
  const PairRows pr(blockIdx.x, T, H, HD, valid_len);
  const int q0 = query_tile_row0();
  const int row0 = q0 + warp * kRows;  // this warp's first query
  const uint16_t* q = qkv16 + pr.q;
  // The K and V tiles of keys [k0, k0 + 64) start loading into loop buffer (k0 / 64) % 2.
  const auto start_loading = [&](int k0) {
    const LoopBuffer<HD> buf(smem, (k0 / kTile) % 2);
    load_tile_async<HD>(buf.tile, q + pr.d + k0 * pr.ld, pr.ld, min(kTile, T - k0));
    load_tile_async<HD>(buf.tile2, q + 2 * pr.d + k0 * pr.ld, pr.ld, min(kTile, T - k0));
    commit_async_copies();
  };
  load_tile<HD>(qs, q + q0 * pr.ld, pr.ld, min(kTile, T - q0));
  load_tile<HD>(dos, dout16 + pr.o + int64_t(q0) * pr.d, pr.d, min(kTile, T - q0));
  float lse_r[2], dot_r[2];  // rows g and g + 8
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int query = row0 + fr.g + 8 * h;
    lse_r[h] = query < T ? lse[pr.state + query] : INFINITY;
    dot_r[h] = query < T ? row_dot[pr.state + query] : 0.f;
  }
  float dq[kOut][4];
#pragma unroll
  for (int n = 0; n < kOut; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) dq[n][e] = 0.f;
  const int key_end = causal ? min(q0 + kTile, pr.kv_len) : pr.kv_len;
  if (key_end > 0) start_loading(0);
  for (int k0 = 0; k0 < key_end; k0 += kTile) {
    // This step's K and V (and Q, dO) are in, the next key tile's loading.
    begin_step(k0 + kTile < key_end, [&] { start_loading(k0 + kTile); });
    const LoopBuffer<HD> buf(smem, (k0 / kTile) % 2);
    const uint16_t *ks = buf.tile, *vs = buf.tile2;
#pragma unroll 1                                 // one half's registers at a time
    for (int c0 = 0; c0 < kTile; c0 += kHalf) {  // keys [k0 + c0, k0 + c0 + 32)
      const uint16_t *kh = ks + c0 * kLdTile<HD>, *vh = vs + c0 * kLdTile<HD>;
      float s[kHalfFrags][4], ds[kHalfFrags][4];  // S; dP then dS
      two_products<HD>(s, ds, qs, kh, dos, vh);
#pragma unroll
      for (int j = 0; j < kHalfFrags; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int h = e / 2;
          const float p = visible(causal, pr.kv_len, T, row0 + fr.row(e), k0 + c0 + fr.col(j, e))
                              ? expf(scale * s[j][e] - lse_r[h])
                              : 0.f;
          ds[j][e] = p * (ds[j][e] - dot_r[h]);
        }
      accumulate_product<HD>(dq, ds, kh);  // dQ += dS · K
    }
    __syncthreads();  // every warp is done with this buffer before it is loaded again
  }
  const int rows = min(kRows, T - row0);
  add_rows<HD, kStore>(dqkv + pr.q + int64_t(row0) * pr.ld, pr.ld, dq, scale, rows);
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
  return ((hd == (Steps + 1) * kHeadDimStep
               ? (f(std::integral_constant<int, (Steps + 1) * kHeadDimStep>{}), true)
               : false) ||
          ...);
}
template <typename F>
void with_head_dim(int hd, F&& f) {
  if (!call_with_head_dim(hd, f, std::make_integer_sequence<int, 128 / kHeadDimStep>{}))
    fail("flash attention: head_dim ", hd, " is not a multiple of 16 up to 128");
}

dim3 grid_of(const nn::AttentionConfig& cfg) {
  return dim3(unsigned(cfg.batch * cfg.n_heads), unsigned((cfg.seq_len + kTile - 1) / kTile));
}

float scale_of(const nn::AttentionConfig& cfg) { return 1.f / std::sqrt(float(cfg.head_dim)); }

// saved's parts: lse [B, H, T] floats, then the bf16 qkv at the next multiple of 4 floats.
int64_t lse_floats(const nn::AttentionConfig& cfg) {
  return int64_t(cfg.batch) * cfg.n_heads * cfg.seq_len;
}
int64_t qkv_elements(const nn::AttentionConfig& cfg) {
  return int64_t(cfg.batch) * cfg.seq_len * 3 * cfg.model_dim();
}
int64_t qkv16_offset(const nn::AttentionConfig& cfg) { return (lse_floats(cfg) + 3) / 4 * 4; }

}  // namespace

bool flash_attention_supports(const nn::AttentionConfig& cfg) {
  return cfg.precision == Precision::kBf16 && cfg.head_dim > 0 && cfg.head_dim % 16 == 0 &&
         cfg.head_dim <= 128;
}

int64_t flash_attention_saved_floats(const nn::AttentionConfig& cfg) {
  return qkv16_offset(cfg) + (qkv_elements(cfg) + 1) / 2;
}

uint16_t* flash_attention_qkv16(float* saved, const nn::AttentionConfig& cfg) {
  return reinterpret_cast<uint16_t*>(saved + qkv16_offset(cfg));
}

void flash_attention_forward(float* out, float* saved, const float* qkv,
                             const nn::AttentionConfig& cfg, const int* valid_len,
                             const Context& ctx) {
  if (cfg.batch <= 0 || cfg.seq_len <= 0 || cfg.n_heads <= 0) return;
  to_bf16(flash_attention_qkv16(saved, cfg), qkv, qkv_elements(cfg), ctx.stream);
  flash_attention_forward_saved(out, saved, cfg, valid_len, ctx);
}

void flash_attention_forward_saved(float* out, float* saved, const nn::AttentionConfig& cfg,
                                   const int* valid_len, const Context& ctx) {
  if (cfg.batch <= 0 || cfg.seq_len <= 0 || cfg.n_heads <= 0) return;
  ECMOE_CHECK(reinterpret_cast<uintptr_t>(saved) % 16 == 0,
              "flash attention: the saved state must start at a 16-byte boundary");
  const uint16_t* qkv16 = flash_attention_qkv16(saved, cfg);
  with_head_dim(cfg.head_dim, [&](auto hd) {
    constexpr int HD = decltype(hd)::value;
    constexpr int bytes = ForwardSmem<HD>::bytes;
    static const bool ready = allow_shared_memory(forward_kernel<HD>, bytes);
    (void)ready;
    launch(forward_kernel<HD>, grid_of(cfg), kThreads, bytes, ctx.stream, out, saved, qkv16,
           valid_len, cfg.seq_len, cfg.n_heads, scale_of(cfg), cfg.causal);
  });
}

void flash_attention_backward(float* dqkv, const float* dout, const float* out, const float* saved,
                              const nn::AttentionConfig& cfg, const int* valid_len,
                              nn::GradWrite dqkv_write, FlashAttentionScratch& scratch,
                              const Context& ctx) {
  if (cfg.batch <= 0 || cfg.seq_len <= 0 || cfg.n_heads <= 0) return;
  const int64_t rows = int64_t(cfg.batch) * cfg.seq_len, d = cfg.model_dim();
  const float* lse = saved;
  const uint16_t* qkv16 = reinterpret_cast<const uint16_t*>(saved + qkv16_offset(cfg));
  scratch.dout16.resize(size_t(rows * d));
  to_bf16(scratch.dout16.data(), dout, rows * d, ctx.stream);
  const int64_t n_dot = rows * cfg.n_heads;
  scratch.row_dot.resize(size_t(n_dot));
  launch(row_dot_kernel, blocks_for(n_dot, 256), 256, 0, ctx.stream, scratch.row_dot.data(),
         scratch.dout16.data(), out, cfg.seq_len, cfg.n_heads, cfg.head_dim, n_dot);
  const auto run = [&](auto hd, auto store) {
    constexpr int HD = decltype(hd)::value;
    constexpr bool kStore = decltype(store)::value;
    constexpr int bytes = BackwardSmem<HD>::bytes;
    static const bool ready = allow_shared_memory(backward_kv_kernel<HD, kStore>, bytes) &&
                              allow_shared_memory(backward_q_kernel<HD, kStore>, bytes);
    (void)ready;
    launch(backward_kv_kernel<HD, kStore>, grid_of(cfg), kThreads, bytes, ctx.stream, dqkv, qkv16,
           scratch.dout16.data(), lse, scratch.row_dot.data(), valid_len, cfg.seq_len, cfg.n_heads,
           scale_of(cfg), cfg.causal);
    launch(backward_q_kernel<HD, kStore>, grid_of(cfg), kThreads, bytes, ctx.stream, dqkv, qkv16,
           scratch.dout16.data(), lse, scratch.row_dot.data(), valid_len, cfg.seq_len, cfg.n_heads,
           scale_of(cfg), cfg.causal);
  };
  with_head_dim(cfg.head_dim, [&](auto hd) {
    if (dqkv_write == nn::GradWrite::kOverwrite)
      run(hd, std::true_type{});
    else
      run(hd, std::false_type{});
  });
}

}  // namespace ecmoe::cuda
