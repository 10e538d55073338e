#include "core/gemm.h"

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/error.h"

namespace ecmoe {
namespace {

// Tile sizes: large enough for the library's kernels to run near peak, small enough that typical
// expert problems give every core work. Fixed constants, never derived from the thread count.
constexpr int kTileM = 128;
constexpr int kTileN = 512;

struct Tile {
  const GemmProblem* p;
  int m0, n0, mm, nn;
};

void run_tile(const Tile& t) {
  const GemmProblem& p = *t.p;
  const float* a = p.trans_a ? p.a + t.m0 : p.a + int64_t(t.m0) * p.lda;
  const float* b = p.trans_b ? p.b + int64_t(t.n0) * p.ldb : p.b + t.n0;
  float* c = p.c + int64_t(t.m0) * p.ldc + t.n0;
  const dnnl_status_t st = dnnl_sgemm(p.trans_a ? 'T' : 'N', p.trans_b ? 'T' : 'N', t.mm, t.nn, p.k,
                                      p.alpha, a, p.lda, b, p.ldb, p.beta, c, p.ldc);
  if (st != dnnl_success) fail("oneDNN sgemm failed with status ", int(st));
}

void scale_only(const GemmProblem& p) {  // k == 0: C = beta · C
  for (int i = 0; i < p.m; ++i)
    for (int j = 0; j < p.n; ++j) {
      float& c = p.c[int64_t(i) * p.ldc + j];
      c = p.beta == 0.f ? 0.f : p.beta * c;
    }
}

void append_tiles(const GemmProblem& p, std::vector<Tile>& tiles) {
  for (int m0 = 0; m0 < p.m; m0 += kTileM)
    for (int n0 = 0; n0 < p.n; n0 += kTileN)
      tiles.push_back({&p, m0, n0, std::min(kTileM, p.m - m0), std::min(kTileN, p.n - n0)});
}

}  // namespace

GemmProblem make_gemm(bool trans_a, bool trans_b, int m, int n, int k, const float* a,
                      const float* b, float* c, float beta, float alpha) {
  GemmProblem p;
  p.trans_a = trans_a;
  p.trans_b = trans_b;
  p.m = m;
  p.n = n;
  p.k = k;
  p.alpha = alpha;
  p.a = a;
  p.lda = std::max(1, trans_a ? m : k);
  p.b = b;
  p.ldb = std::max(1, trans_b ? k : n);
  p.beta = beta;
  p.c = c;
  p.ldc = std::max(1, n);
  return p;
}

void gemm(const GemmProblem& p) { gemm_batch(std::span<const GemmProblem>(&p, 1)); }

void gemm_batch(std::span<const GemmProblem> problems) {
  std::vector<Tile> tiles;
  for (const auto& p : problems) {
    if (p.m <= 0 || p.n <= 0) continue;
    if (p.k <= 0) {
      scale_only(p);
      continue;
    }
    append_tiles(p, tiles);
  }
  const int count = int(tiles.size());
  // Each tile runs inside a parallel region, even a lone one, so the library never splits a
  // tile's reduction across threads.
  if (omp_in_parallel()) {
    for (const auto& t : tiles) run_tile(t);
    return;
  }
#pragma omp parallel for schedule(dynamic, 1)
  for (int i = 0; i < count; ++i) run_tile(tiles[i]);
}

void gemm_library_direct(const GemmProblem& p) {
  if (p.m <= 0 || p.n <= 0) return;
  const dnnl_status_t st = dnnl_sgemm(p.trans_a ? 'T' : 'N', p.trans_b ? 'T' : 'N', p.m, p.n, p.k,
                                      p.alpha, p.a, p.lda, p.b, p.ldb, p.beta, p.c, p.ldc);
  if (st != dnnl_success) fail("oneDNN sgemm failed with status ", int(st));
}

GemmBackendInfo gemm_backend_info() {
  const dnnl_version_t* v = dnnl_version();
  GemmBackendInfo info;
  info.library = "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
                 std::to_string(v->patch);
  switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41:
      info.isa = "SSE4.1";
      break;
    case dnnl_cpu_isa_avx:
      info.isa = "AVX";
      break;
    case dnnl_cpu_isa_avx2:
      info.isa = "AVX2";
      break;
    case dnnl_cpu_isa_avx512_core:
      info.isa = "AVX-512";
      break;
    case dnnl_cpu_isa_avx512_core_vnni:
      info.isa = "AVX-512 VNNI";
      break;
    case dnnl_cpu_isa_avx512_core_bf16:
      info.isa = "AVX-512 BF16";
      break;
    case dnnl_cpu_isa_avx512_core_amx:
      info.isa = "AVX-512 AMX";
      break;
    case dnnl_cpu_isa_avx2_vnni:
      info.isa = "AVX2 VNNI";
      break;
    default:
      info.isa = "isa code " + std::to_string(int(dnnl_get_effective_cpu_isa()));
      break;
  }
  return info;
}

}  // namespace ecmoe
