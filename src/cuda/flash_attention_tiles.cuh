// The pieces the flash attention kernels (cuda/flash_attention.cu) share: tile sizes, the
// shared-memory layout of a tile, loading a tile of bf16 rows into shared memory, and the
// visibility rule of a (query, key) pair. The products themselves: cuda/mma_fragments.cuh.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/async_copy.cuh"

namespace ecmoe::cuda::flash {

constexpr int kTile = 64;     // queries or keys a block owns, and the tile its loop steps over
constexpr int kWarps = 4;     // each warp owns kRows rows of the block's tile
constexpr int kRows = 16;     // an mma.m16n8k16's m
constexpr int kKeyStep = 16;  // its k: keys (or queries) per product of P·V
constexpr int kCols = 8;      // its n: columns of one result fragment
constexpr int kThreads = kWarps * 32;
constexpr int kHeadDimStep = 16;  // head_dim: a multiple of this, up to 128
static_assert(kWarps * kRows == kTile, "the warps' rows cover the tile");

// Leading dimension of a bf16 [64, HD] tile in shared memory, in elements. The 8 elements of
// padding (16 bytes) keep the fragment loads of cuda/mma_fragments.cuh free of bank conflicts: a
// row is HD/2 + 4 words with HD a multiple of 16, so a warp's 32-bit loads of rows g = 0..7 at
// columns 2t (t = 0..3) fall in 32 different banks, and so do the 16-byte rows of each 8×8
// matrix of an ldmatrix.
template <int HD>
constexpr int kLdTile = HD + 8;

constexpr int align128(int bytes) { return (bytes + 127) / 128 * 128; }
template <int HD>
constexpr int kTileBytes = align128(kTile* kLdTile<HD> * 2);
constexpr int kRowBytes = align128(kTile * 4);  // a float per row of the tile

// dst [64, kLdTile<HD>] <- rows [0, rows) of src (row i at src + i·src_ld, HD bf16 each); rows
// [rows, 64) are zeros, so no fragment reads past the sequence. src and src_ld are multiples of
// 16 elements from a 256-byte aligned buffer: 16-byte vector loads. The whole block calls it.
// kAsync: the rows inside the sequence by cp.async (cuda/async_copy.cuh; the caller commits and
// waits), the zeros by plain stores.
template <int HD, bool kAsync = false>
__device__ __forceinline__ void load_tile(uint16_t* dst, const uint16_t* src, int64_t src_ld,
                                          int rows) {
  constexpr int kVecs = HD / 8;  // 16-byte vectors per row
  for (int i = threadIdx.x; i < kTile * kVecs; i += kThreads) {
    const int r = i / kVecs, c = (i % kVecs) * 8;
    uint16_t* to = dst + r * kLdTile<HD> + c;
    const uint16_t* from = src + r * src_ld + c;
    if (r >= rows)
      *reinterpret_cast<uint4*>(to) = make_uint4(0u, 0u, 0u, 0u);
    else if constexpr (kAsync)
      copy_async_16(to, from);
    else
      *reinterpret_cast<uint4*>(to) = *reinterpret_cast<const uint4*>(from);
  }
}
template <int HD>
__device__ __forceinline__ void load_tile_async(uint16_t* dst, const uint16_t* src, int64_t src_ld,
                                                int rows) {
  load_tile<HD, true>(dst, src, src_ld, rows);
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
