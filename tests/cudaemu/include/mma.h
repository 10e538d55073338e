// cudaemu: nvcuda::wmma. A fragment holds its whole tile in every lane (how the GPU spreads it over
// the warp's registers is opaque to the code anyway); loads and stores are warp-wide collectives,
// so the warp synchronises before and after each, as the lanes of a convergent warp do.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <type_traits>

namespace cudaemu {
// c + Σ_l a[l]·b[l·b_stride] for l < k (at most 16) as the emulated tensor cores sum it (WMMA's
// mma_sync and mma_m16n8k16_bf16 below): fused multiply-adds in k order onto c, or under
// CUDAEMU_PERTURB=1 the products summed pairwise and then added to c (the hardware's order is its
// own).
float tensor_core_dot(float c, const float* a, const float* b, int b_stride, int k);
}  // namespace cudaemu

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K>
struct tile_shape;
template <int M, int N, int K>
struct tile_shape<matrix_a, M, N, K> {
  static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct tile_shape<matrix_b, M, N, K> {
  static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct tile_shape<accumulator, M, N, K> {
  static constexpr int rows = M, cols = N;
};

// x holds the tile row-major: x[r * cols + c].
template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static constexpr int rows = tile_shape<Use, M, N, K>::rows;
  static constexpr int cols = tile_shape<Use, M, N, K>::cols;
  static constexpr int num_elements = rows * cols;
  T x[num_elements];
};

template <typename Use, int M, int N, int K, typename T, typename Layout>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, T v) {
  for (auto& e : f.x) e = v;
}
template <typename Use, int M, int N, int K, typename T, typename Layout, typename V>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, V v) {
  for (auto& e : f.x) e = T(v);
}

namespace detail {
// CUDA's rules for a fragment's memory: a 256-bit aligned pointer, ldm a multiple of 16 bytes.
template <typename P>
void check_memory(const P* p, unsigned ldm) {
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0 || (size_t(ldm) * sizeof(P)) % 16 != 0)
    ::cudaemu::fatal_wmma(p, ldm, sizeof(P));
}

template <typename F, typename P>
void load(F& f, const P* p, unsigned ldm, bool row_major) {
  check_memory(p, ldm);
  ::cudaemu::sync_warp();
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c)
      f.x[r * F::cols + c] = row_major ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r];
  ::cudaemu::sync_warp();
}
}  // namespace detail

template <typename Use, int M, int N, int K, typename T, typename Layout, typename P>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const P* p, unsigned ldm) {
  static_assert(!std::is_same_v<Use, accumulator>, "an accumulator load needs a layout");
  static_assert(std::is_same_v<P, T>, "a fragment loads from memory of its own element type");
  detail::load(f, p, ldm, std::is_same_v<Layout, row_major>);
}
template <int M, int N, int K, typename T>
void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const T* p, unsigned ldm,
                      layout_t layout) {
  detail::load(f, p, ldm, layout == mem_row_major);
}
template <int M, int N, int K, typename T>
void store_matrix_sync(T* p, const fragment<accumulator, M, N, K, T>& f, unsigned ldm,
                       layout_t layout) {
  using F = fragment<accumulator, M, N, K, T>;
  detail::check_memory(p, ldm);
  ::cudaemu::sync_warp();
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c)
      (layout == mem_row_major ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r]) =
          f.x[r * F::cols + c];
  ::cudaemu::sync_warp();
}

// d = a·b + c, each element a cudaemu::tensor_core_dot (d may be c). A warp-wide operation: the
// lanes' fragments are the same tiles (loads and stores are warp-uniform), so the last lane to
// arrive computes the tile once, into the warp's scratch, and every lane copies it out (not 32
// lanes computing it each).
template <int M, int N, int K, typename TA, typename LA, typename TB, typename LB, typename TC>
void mma_sync(fragment<accumulator, M, N, K, TC>& d, const fragment<matrix_a, M, N, K, TA, LA>& a,
              const fragment<matrix_b, M, N, K, TB, LB>& b,
              const fragment<accumulator, M, N, K, TC>& c) {
  TC* out = static_cast<TC*>(::cudaemu::warp_scratch(sizeof(TC) * M * N));
  const std::function<void()> once = [&a, &b, &c, out] {
    float af[M * K], bf[K * N];
    for (int i = 0; i < M * K; ++i) af[i] = float(a.x[i]);
    for (int i = 0; i < K * N; ++i) bf[i] = float(b.x[i]);
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j)
        out[i * N + j] =
            TC(::cudaemu::tensor_core_dot(float(c.x[i * N + j]), af + i * K, bf + j, N, K));
  };
  ::cudaemu::sync_warp(&once);
  for (int i = 0; i < M * N; ++i) d.x[i] = out[i];
}

}  // namespace nvcuda::wmma

namespace cudaemu {

// PTX mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 with d as its accumulator: d = a·b + d
// for a 16×16 A, a 16×8 B and a 16×8 fp32 D spread over the warp's registers as the PTX ISA
// lays them out ("Matrix Fragments for mma.m16n8k16 with floating point type"; g = lane / 4,
// t = lane % 4; a bf16x2 register holds its lower-indexed element in its low 16 bits):
//   a[0] = A[g][2t, 2t+1], a[1] = A[g+8][2t, 2t+1], a[2] = A[g][2t+8, 2t+9], a[3] = A[g+8][2t+8,
//   2t+9]; b[0] = B[2t, 2t+1][g], b[1] = B[2t+8, 2t+9][g]; d[0], d[1] = D[g][2t, 2t+1], d[2], d[3]
//   = D[g+8][2t, 2t+1].
// A warp-wide operation: every lane of the warp must be there (mma.sync.aligned), else the
// program stops. Products and sums as wmma::mma_sync's (above; CUDAEMU_PERTURB=1 pairwise).
void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]);

// PTX ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16: four 8×8 matrices of 16-bit elements, lane
// 8i + r giving the address of row r of matrix i (16 bytes, 16-byte aligned, in shared memory);
// lane l receives in r[i] matrix i's elements (2(l % 4), l / 4) and (2(l % 4) + 1, l / 4),
// transposed from what the non-.trans form gives (row l / 4, columns 2(l % 4) and 2(l % 4) + 1).
// A warp-wide operation, as mma_m16n8k16_bf16; a misaligned or non-shared address stops the
// program.
void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row);

}  // namespace cudaemu
