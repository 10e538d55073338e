// `ecmoe info`: what the engine runs on, and quick fp32 and bf16 GEMM speed figures.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "cli/commands.h"
#include "core/bf16.h"
#include "core/gemm.h"
#include "core/precision.h"
#include "core/rng.h"
#include "core/threads.h"
#include "core/timer.h"
#ifdef ECMOE_HAVE_CUDA
#include "cuda/context.h"
#endif

namespace ecmoe::cli {

namespace {
// Our tiled GEMM on size³ (bf16: operands converted once beforehand, as the model's weights are).
double measure_gemm_gflops(int size, Precision precision) {
  std::vector<float> a(size_t(size) * size), b(a.size()), c(a.size());
  Rng rng(1, 0);
  for (size_t i = 0; i < a.size(); ++i) a[i] = rng.normal(i), b[i] = rng.normal(i + a.size());
  auto p = in_precision(make_gemm(false, false, size, size, size, a.data(), b.data(), c.data()),
                        precision);
  Bf16Vec a16(a.size()), b16(b.size());
  if (precision == Precision::kBf16) {
    convert_to_bf16(a16.data(), a.data(), int64_t(a.size()));
    convert_to_bf16(b16.data(), b.data(), int64_t(b.size()));
    p.a_bf16 = a16.data();
    p.b_bf16 = b16.data();
  }
  gemm(p);  // warm-up
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    const double t0 = now_seconds();
    gemm(p);
    best = std::min(best, now_seconds() - t0);
  }
  return 2.0 * size * size * double(size) / best * 1e-9;
}
}  // namespace

void register_info(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("info", "Print the GEMM backend, its ISA, threads and GEMM speeds");
  cmd->callback([] {
    const auto info = gemm_backend_info();
    std::printf("ecmoe %s\n", ECMOE_VERSION);
    std::printf("gemm backend: %s\n", info.library.c_str());
    std::printf("gemm isa:     %s\n", info.isa.c_str());
    std::printf("threads:      %d (cores available: %d)\n", thread_count(), default_thread_count());
    std::printf("openmp wait:  %s\n", wait_policy_description().c_str());
    std::printf("bf16 gemm:    %s\n", bf16_native() ? "native (the CPU's bf16 instructions)"
                                      : bf16_native_available()
                                          ? "fallback (ECMOE_BF16_FALLBACK=1: bf16 values, fp32 "
                                            "kernel)"
                                          : "fallback (no bf16 instructions on this CPU: bf16 "
                                            "values, fp32 kernel)");
    std::printf(
        "precision:    auto = %s here (configs/small.json trains in it; --set "
        "precision=fp32|bf16 overrides)\n",
        precision_name(native_precision()).c_str());
#ifdef ECMOE_HAVE_CUDA
    std::printf("cuda:         %s\n", cuda::device_summary().c_str());
#else
    std::printf(
        "cuda:         not built (-DECMOE_CUDA=ON builds the CUDA backend; docs/cuda.md)\n");
#endif
    std::printf("sgemm 1024^3: %.1f GFLOP/s (best of 5)\n",
                measure_gemm_gflops(1024, Precision::kFp32));
    std::printf("bf16  1024^3: %.1f GFLOP/s (best of 5; bf16 operands, fp32 accumulation)\n",
                measure_gemm_gflops(1024, Precision::kBf16));
  });
}

}  // namespace ecmoe::cli
