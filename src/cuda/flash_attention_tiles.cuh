// The pieces the flash attention kernels (cuda/flash_attention.cu) share: tile sizes, WMMA
// fragment types, shared-memory leading dimensions and region sizes, loading a tile of bf16 rows
// into shared memory, and the visibility rule of a (query, key) pair.
#pragma once
#include <cuda_bf16.h>
#include <mma.h>

#include <cstdint>

namespace ecmoe::cuda::flash {

namespace wmma = nvcuda::wmma;
using bf16 = __nv_bfloat16;

constexpr int kTile = 64;  // queries or keys a block owns, and the tile its loop steps over
constexpr int kWarps = 4;  // each warp owns 16 rows of the block's tile
constexpr int kThreads = kWarps * 32;
constexpr int kFrag = 16;  // WMMA's m = n = k
constexpr int kTileFrags = kTile / kFrag;

using FragA = wmma::fragment<wmma::matrix_a, kFrag, kFrag, kFrag, bf16, wmma::row_major>;
using FragB = wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, bf16, wmma::row_major>;
// A matrix_b read as the transpose of a row-major tile (Kᵀ from K's rows).
using FragBt = wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, bf16, wmma::col_major>;
using FragAcc = wmma::fragment<wmma::accumulator, kFrag, kFrag, kFrag, float>;

// Leading dimensions in shared memory, in elements. WMMA needs multiples of 8 (bf16) and 4
// (fp32) and 32-byte aligned fragment pointers: every fragment starts at a multiple of 16 rows
// and 16 columns of a 128-byte aligned region, so any such leading dimension keeps that. The
// padding staggers rows across banks.
template <int HD>
constexpr int kLdTile = HD + 8;      // bf16 [64, HD] tiles of Q, K, V, dO
constexpr int kLdScore = kTile + 4;  // fp32 [16, 64] per warp: scores, dP
// bf16 [16, 64] per warp: P (in its scores' storage) and dS (in dP's), a row of bf16 in the
// first bytes of the row of floats it is computed from, so that they need no memory of their
// own (more blocks fit a multiprocessor). Its 272-byte rows keep WMMA's 32-byte alignment.
constexpr int kLdProb = 2 * kLdScore;
template <int HD>
constexpr int kLdOut = HD + 4;  // fp32 [64, HD]: the forward's unnormalised output

constexpr int align128(int bytes) { return (bytes + 127) / 128 * 128; }
template <int HD>
constexpr int kTileBytes = align128(kTile* kLdTile<HD> * 2);
constexpr int kScoreBytes = align128(kWarps * kFrag * kLdScore * 4);  // every warp's [16, 64]
constexpr int kRowBytes = align128(kTile * 4);                        // a float per row of the tile

// Where the forward keeps column j of a row of P within the row's storage (kLdProb bf16): the
// lane that owns columns [0, 32) of the row writes them over the scores it has already read,
// bytes [0, 64); the lane owning [32, 64), at bytes [128, 192), over its own. So neither
// overwrites a score the other has yet to read, and a 16-column fragment stays contiguous.
__device__ __forceinline__ constexpr int prob_column(int j) { return j + (j & 32); }
static_assert(kTile == 64 && prob_column(kTile - 1) < kLdProb, "P's columns fit in its rows");

// dst [64, kLdTile<HD>] <- rows [0, rows) of src (row i at src + i·src_ld, HD bf16 each); rows
// [rows, 64) are zeros, so no fragment reads past the sequence. src and src_ld are multiples of
// 16 elements from a 256-byte aligned buffer: 16-byte vector loads. The whole block calls it.
template <int HD>
__device__ __forceinline__ void load_tile(bf16* dst, const uint16_t* src, int64_t src_ld,
                                          int rows) {
  constexpr int kVecs = HD / 8;  // 16-byte vectors per row
  for (int i = threadIdx.x; i < kTile * kVecs; i += kThreads) {
    const int r = i / kVecs, c = (i % kVecs) * 8;
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (r < rows) v = *reinterpret_cast<const uint4*>(src + r * src_ld + c);
    *reinterpret_cast<uint4*>(dst + r * kLdTile<HD> + c) = v;
  }
}

// Whether query `query` of a sequence with kv_len valid keys sees key `key` (nn/attention.cpp's
// rule: keys [0, causal ? min(query + 1, kv_len) : kv_len)); queries past the sequence (seq_len)
// see nothing.
__device__ __forceinline__ bool visible(bool causal, int kv_len, int seq_len, int query, int key) {
  const int n = causal ? min(query + 1, kv_len) : kv_len;
  return query < seq_len && key < n;
}

// bf16 bits -> float
__device__ __forceinline__ float widen(uint16_t x) { return __uint_as_float(uint32_t(x) << 16); }

}  // namespace ecmoe::cuda::flash
