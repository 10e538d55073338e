#include "core/gemm.h"

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/bf16.h"
#include "core/error.h"

// Exported by oneDNN 2.x but declared only in its internal headers (its own tests declare it
// the same way): row-major like dnnl_sgemm, bf16 A and B, fp32 accumulation and C.
extern "C" dnnl_status_t dnnl_gemm_bf16bf16f32(char transa, char transb, dnnl_dim_t M, dnnl_dim_t N,
                                               dnnl_dim_t K, float alpha, const uint16_t* A,
                                               dnnl_dim_t lda, const uint16_t* B, dnnl_dim_t ldb,
                                               float beta, float* C, dnnl_dim_t ldc);

namespace ecmoe {
namespace {

// Tile sizes: large enough for the library's kernels to run near peak, small enough that typical
// expert problems give every core work. Fixed constants, never derived from the thread count.
constexpr int kTileM = 128;
constexpr int kTileN = 512;

// GemmRowsAsGiven scopes open on this thread.
thread_local int rows_as_given_depth = 0;

enum class Kernel { kFp32, kBf16Native, kBf16Fallback };

// A problem with its operands as the kernel reads them: the caller's (fp32), bf16 copies
// (native) or fp32 copies of the bf16-rounded values (fallback). Copies are dense, so their
// leading dimensions may differ from the problem's.
struct Resolved {
  const GemmProblem* p;
  Kernel kernel;
  const void* a;
  int64_t lda;
  const void* b;
  int64_t ldb;
  bool pad_rows;  // a partial last row tile is computed as a whole one (row_stable)
};

// Storage for the converted operands of one call.
struct Converted {
  std::vector<Bf16Vec> halves;
  std::vector<FloatVec> floats;
};

struct Tile {
  const Resolved* r;
  int m0, n0, mm, nn;
};

template <typename T>
const T* offset(const void* base, int64_t elements) {
  return static_cast<const T*>(base) + elements;
}

// The library call for rows [m0, m0 + rows) of op(A) at `a` (leading dimension lda) into C at c.
void call_library(const Resolved& r, const Tile& t, const void* a, int rows, float* c) {
  const GemmProblem& p = *r.p;
  const int64_t b_off = p.trans_b ? int64_t(t.n0) * r.ldb : t.n0;
  const char ta = p.trans_a ? 'T' : 'N', tb = p.trans_b ? 'T' : 'N';
  dnnl_status_t st;
  if (r.kernel == Kernel::kBf16Native) {
    st = dnnl_gemm_bf16bf16f32(ta, tb, rows, t.nn, p.k, p.alpha, static_cast<const uint16_t*>(a),
                               r.lda, offset<uint16_t>(r.b, b_off), r.ldb, p.beta, c, p.ldc);
  } else {
    st = dnnl_sgemm(ta, tb, rows, t.nn, p.k, p.alpha, static_cast<const float*>(a), r.lda,
                    offset<float>(r.b, b_off), r.ldb, p.beta, c, p.ldc);
  }
  if (st != dnnl_success) fail("oneDNN gemm failed with status ", int(st));
}

// A row-stable problem's last, partial row tile, computed as a whole kTileM-row tile: A's rows
// copied into a scratch with the same leading dimension (the missing rows zero), C's likewise
// (read when beta is not 0), and the real rows copied back.
void run_padded_tile(const Resolved& r, const Tile& t) {
  const GemmProblem& p = *r.p;
  const size_t elem = r.kernel == Kernel::kBf16Native ? sizeof(uint16_t) : sizeof(float);
  const size_t a_row = size_t(r.lda) * elem, c_row = size_t(p.ldc);
  thread_local std::vector<unsigned char> a_pad;
  thread_local std::vector<float> c_pad;
  a_pad.assign(size_t(kTileM) * a_row, 0);
  c_pad.assign(size_t(kTileM) * c_row, 0.f);
  const auto* a = static_cast<const unsigned char*>(r.a) + size_t(t.m0) * a_row;
  float* c = p.c + int64_t(t.m0) * p.ldc + t.n0;
  for (int i = 0; i < t.mm; ++i) {
    std::memcpy(a_pad.data() + i * a_row, a + i * a_row, size_t(p.k) * elem);
    if (p.beta != 0.f) std::memcpy(c_pad.data() + i * c_row, c + i * c_row, size_t(t.nn) * 4);
  }
  call_library(r, t, a_pad.data(), kTileM, c_pad.data());
  for (int i = 0; i < t.mm; ++i)
    std::memcpy(c + i * c_row, c_pad.data() + i * c_row, size_t(t.nn) * sizeof(float));
}

void run_tile(const Tile& t) {
  const Resolved& r = *t.r;
  const GemmProblem& p = *r.p;
  if (r.pad_rows && t.mm < kTileM) {
    run_padded_tile(r, t);
  } else {
    // Element offset of the tile's first row of op(A).
    const int64_t a_off = p.trans_a ? t.m0 : int64_t(t.m0) * r.lda;
    const void* a = r.kernel == Kernel::kBf16Native
                        ? static_cast<const void*>(offset<uint16_t>(r.a, a_off))
                        : static_cast<const void*>(offset<float>(r.a, a_off));
    call_library(r, t, a, t.mm, p.c + int64_t(t.m0) * p.ldc + t.n0);
  }
  if (p.epilogue) (*p.epilogue)(t.m0, t.n0, t.mm, t.nn);
}

// One operand as the kernel reads it. Stored as `rows` rows of `cols` with leading dimension ld.
void resolve_operand(Kernel kernel, const float* x, const uint16_t* x16, int64_t rows, int64_t cols,
                     int64_t ld, Converted& store, const void*& out, int64_t& out_ld) {
  if (kernel == Kernel::kFp32) {
    out = x;
    out_ld = ld;
    return;
  }
  if (kernel == Kernel::kBf16Native) {
    if (x16) {
      out = x16;
      out_ld = ld;
      return;
    }
    Bf16Vec& h = store.halves.emplace_back(size_t(rows * cols));
    convert_to_bf16(h.data(), x, rows, cols, ld);
    out = h.data();
    out_ld = std::max<int64_t>(1, cols);
    return;
  }
  FloatVec& f = store.floats.emplace_back(size_t(rows * cols));
  if (x16)
    bf16_to_float(f.data(), x16, rows, cols, ld);
  else
    round_to_bf16(f.data(), x, rows, cols, ld);
  out = f.data();
  out_ld = std::max<int64_t>(1, cols);
}

Resolved resolve(const GemmProblem& p, Kernel bf16_kernel, Converted& store) {
  // Decided on the calling thread: a GemmRowsAsGiven scope is its own.
  Resolved r{&p,    p.precision == Precision::kBf16 ? bf16_kernel : Kernel::kFp32, p.a, p.lda, p.b,
             p.ldb, p.row_stable && !p.trans_a && rows_as_given_depth == 0};
  // A is stored [m, k] (or [k, m] transposed), B [k, n] (or [n, k]).
  resolve_operand(r.kernel, p.a, p.a_bf16, p.trans_a ? p.k : p.m, p.trans_a ? p.m : p.k, p.lda,
                  store, r.a, r.lda);
  resolve_operand(r.kernel, p.b, p.b_bf16, p.trans_b ? p.n : p.k, p.trans_b ? p.k : p.n, p.ldb,
                  store, r.b, r.ldb);
  return r;
}

Kernel current_bf16_kernel() { return bf16_native() ? Kernel::kBf16Native : Kernel::kBf16Fallback; }

void scale_only(const GemmProblem& p) {  // k == 0: C = beta · C
  for (int i = 0; i < p.m; ++i)
    for (int j = 0; j < p.n; ++j) {
      float& c = p.c[int64_t(i) * p.ldc + j];
      c = p.beta == 0.f ? 0.f : p.beta * c;
    }
  if (p.epilogue) (*p.epilogue)(0, 0, p.m, p.n);
}

// -1: not read yet; 0 / 1: the fallback is forced off / on.
std::atomic<int> forced_fallback{-1};

void append_tiles(const Resolved& r, std::vector<Tile>& tiles) {
  const GemmProblem& p = *r.p;
  for (int m0 = 0; m0 < p.m; m0 += kTileM)
    for (int n0 = 0; n0 < p.n; n0 += kTileN)
      tiles.push_back({&r, m0, n0, std::min(kTileM, p.m - m0), std::min(kTileN, p.n - n0)});
}

}  // namespace

GemmRowsAsGiven::GemmRowsAsGiven() { ++rows_as_given_depth; }
GemmRowsAsGiven::~GemmRowsAsGiven() { --rows_as_given_depth; }

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
  const Kernel bf16_kernel = current_bf16_kernel();
  Converted store;
  std::vector<Resolved> resolved;
  resolved.reserve(problems.size());  // tiles point into it: no reallocation
  for (const auto& p : problems) {
    if (p.m <= 0 || p.n <= 0) continue;
    if (p.k <= 0) {
      scale_only(p);
      continue;
    }
    resolved.push_back(resolve(p, bf16_kernel, store));
  }
  std::vector<Tile> tiles;
  for (const auto& r : resolved) append_tiles(r, tiles);
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
  Converted store;
  const Resolved r = resolve(p, current_bf16_kernel(), store);
  // The whole problem as one tile, called outside a parallel region: the library threads it.
  run_tile({&r, 0, 0, p.m, p.n});
}

bool bf16_native_available() {
  static const bool available = [] {
    const unsigned bf16_bits = unsigned(dnnl_cpu_isa_avx512_core_bf16);
    return (unsigned(dnnl_get_effective_cpu_isa()) & bf16_bits) == bf16_bits;
  }();
  return available;
}

bool bf16_native() {
  int forced = forced_fallback.load(std::memory_order_relaxed);
  if (forced < 0) {  // first call: the environment decides (a race here reads the same value)
    const char* env = std::getenv("ECMOE_BF16_FALLBACK");
    forced = env && std::strcmp(env, "1") == 0 ? 1 : 0;
    forced_fallback.store(forced, std::memory_order_relaxed);
  }
  return forced == 0 && bf16_native_available();
}

void set_bf16_fallback(bool forced) {
  forced_fallback.store(forced ? 1 : 0, std::memory_order_relaxed);
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
