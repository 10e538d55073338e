// `ecmoe info`: what the engine runs on, and a quick sgemm speed figure.
#include <algorithm>
#include <cstdio>
#include <vector>

#include "cli/commands.h"
#include "core/gemm.h"
#include "core/rng.h"
#include "core/threads.h"
#include "core/timer.h"

namespace ecmoe::cli {

namespace {
double measure_sgemm_gflops(int size) {
  std::vector<float> a(size_t(size) * size), b(a.size()), c(a.size());
  Rng rng(1, 0);
  for (size_t i = 0; i < a.size(); ++i) a[i] = rng.normal(i), b[i] = rng.normal(i + a.size());
  const auto p = make_gemm(false, false, size, size, size, a.data(), b.data(), c.data());
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
      app.add_subcommand("info", "Print the GEMM backend, its ISA, threads and sgemm speed");
  cmd->callback([] {
    const auto info = gemm_backend_info();
    std::printf("ecmoe %s\n", ECMOE_VERSION);
    std::printf("gemm backend: %s\n", info.library.c_str());
    std::printf("gemm isa:     %s\n", info.isa.c_str());
    std::printf("threads:      %d (cores available: %d)\n", thread_count(), default_thread_count());
    std::printf("openmp wait:  %s\n", wait_policy_description().c_str());
    std::printf("sgemm 1024^3: %.1f GFLOP/s (best of 5)\n", measure_sgemm_gflops(1024));
  });
}

}  // namespace ecmoe::cli
