// The register-level tensor-core product of include/mma.h: mma.m16n8k16 with bf16 operands and
// fp32 accumulation. Each lane leaves its registers in the warp's scratch; the last lane to
// arrive assembles the three matrices from the PTX layout, multiplies once, and leaves each lane's
// four results beside them.
#include <mma.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "internal.h"

namespace cudaemu {

namespace {

constexpr int kInWords = 10;  // a[4], b[2], d[4] of one lane

// The warp's scratch as these operations use it. Lanes write their inputs before they arrive, and
// the first to leave may write its inputs to the next operation while the others still read their
// outputs: so inputs and outputs never share bytes, and neither meets the first KB, where
// wmma::mma_sync leaves its tile.
struct Scratch {
  uint32_t* in;   // 32 lanes' inputs: 1,280 bytes at most
  uint32_t* out;  // 32 lanes' four results: 512 bytes
};
Scratch scratch() {
  auto* base = static_cast<unsigned char*>(warp_scratch(4096));
  return {reinterpret_cast<uint32_t*>(base + 1024), reinterpret_cast<uint32_t*>(base + 2560)};
}

float widen(uint32_t bits16) { return from_bits<float>(uint64_t(bits16 & 0xffffu) << 16); }

}  // namespace

float tensor_core_dot(float c, const float* a, const float* b, int b_stride, int k) {
  constexpr int kMax = 16;
  if (k > kMax) fatal("a tensor-core product over k = " + std::to_string(k) + " > 16");
  if (!perturb()) {
    for (int l = 0; l < k; ++l) c = std::fma(a[l], b[l * b_stride], c);
    return c;
  }
  float p[kMax];
  for (int l = 0; l < k; ++l) p[l] = a[l] * b[l * b_stride];
  for (int width = k; width > 1; width = width / 2 + width % 2) {
    for (int l = 0; l < width / 2; ++l) p[l] = p[2 * l] + p[2 * l + 1];
    if (width % 2 != 0) p[width / 2] = p[width - 1];
  }
  return c + p[0];
}

void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  if (warp_live_lanes() != 32)
    fatal("mma.sync.m16n8k16 in a warp of " + std::to_string(warp_live_lanes()) +
          " live lanes: every lane of the warp must execute it (" + where_in_kernel() + ")");
  const Scratch sc = scratch();
  uint32_t *in = sc.in, *out = sc.out;
  uint32_t* mine = in + lane() * kInWords;
  for (int i = 0; i < 4; ++i) mine[i] = a[i];
  for (int i = 0; i < 2; ++i) mine[4 + i] = b[i];
  for (int i = 0; i < 4; ++i) mine[6 + i] = to_bits(d[i]) & 0xffffffffu;
  const std::function<void()> once = [in, out] {
    float A[16][16], B[16][8], C[16][8];
    for (int l = 0; l < 32; ++l) {
      const uint32_t* r = in + l * kInWords;
      const int g = l / 4, t = l % 4;
      for (int h = 0; h < 2; ++h) {
        A[g][2 * t + h] = widen(r[0] >> (16 * h));
        A[g + 8][2 * t + h] = widen(r[1] >> (16 * h));
        A[g][2 * t + 8 + h] = widen(r[2] >> (16 * h));
        A[g + 8][2 * t + 8 + h] = widen(r[3] >> (16 * h));
        B[2 * t + h][g] = widen(r[4] >> (16 * h));
        B[2 * t + 8 + h][g] = widen(r[5] >> (16 * h));
        C[g][2 * t + h] = from_bits<float>(r[6 + h]);
        C[g + 8][2 * t + h] = from_bits<float>(r[8 + h]);
      }
    }
    for (int l = 0; l < 32; ++l) {
      const int g = l / 4, t = l % 4;
      for (int h = 0; h < 2; ++h)
        for (int half = 0; half < 2; ++half) {
          const int row = g + 8 * half, col = 2 * t + h;
          const float v = tensor_core_dot(C[row][col], A[row], &B[0][col], 8, 16);
          out[l * 4 + 2 * half + h] = uint32_t(to_bits(v));
        }
    }
  };
  sync_warp(&once);
  for (int i = 0; i < 4; ++i) d[i] = from_bits<float>(out[lane() * 4 + i]);
}

void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
  if (warp_live_lanes() != 32)
    fatal("ldmatrix in a warp of " + std::to_string(warp_live_lanes()) +
          " live lanes: every lane of the warp must execute it (" + where_in_kernel() + ")");
  if (reinterpret_cast<uintptr_t>(row) % 16 != 0 || !in_shared_memory(row, 16))
    fatal("ldmatrix: lane " + std::to_string(lane()) +
          "'s row address is not 16 bytes of shared memory at a 16-byte boundary (" +
          where_in_kernel() + ")");
  const Scratch sc = scratch();
  auto* rows = reinterpret_cast<const uint16_t**>(sc.in);
  uint32_t* out = sc.out;
  rows[lane()] = static_cast<const uint16_t*>(row);
  const std::function<void()> once = [rows, out] {
    for (int l = 0; l < 32; ++l)
      for (int i = 0; i < 4; ++i) {
        const uint16_t lo = rows[8 * i + 2 * (l % 4)][l / 4],
                       hi = rows[8 * i + 2 * (l % 4) + 1][l / 4];
        out[l * 4 + i] = uint32_t(lo) | uint32_t(hi) << 16;
      }
  };
  sync_warp(&once);
  for (int i = 0; i < 4; ++i) r[i] = out[lane() * 4 + i];
}

}  // namespace cudaemu
