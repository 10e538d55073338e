// Helpers of the CUDA backend's tests: skipping without a GPU (or failing:
// ECMOE_CUDA_TESTS_MUST_RUN), host <-> device copies, random data, and the comparisons (bitwise, or
// within a relative tolerance of the CPU's result).
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "core/rng.h"
#include "cuda/context.h"
#include "cuda/device_buffer.h"
#include "moe/routing_stats.h"

namespace ecmoe::cuda::testing {

// Skips the test without a GPU, or fails it when ECMOE_CUDA_TESTS_MUST_RUN=1 (scripts/gpu-check.sh
// sets it, so that a GPU machine whose device cannot be used does not pass by skipping).
inline bool cuda_tests_must_run() {
  const char* v = std::getenv("ECMOE_CUDA_TESTS_MUST_RUN");
  return v != nullptr && std::string(v) == "1";
}

#define ECMOE_REQUIRE_GPU()                                                                \
  do {                                                                                     \
    if (::ecmoe::cuda::device_count() == 0) {                                              \
      if (::ecmoe::cuda::testing::cuda_tests_must_run())                                   \
        GTEST_FAIL() << "no CUDA device here (" << ::ecmoe::cuda::no_device_reason()       \
                     << "), but ECMOE_CUDA_TESTS_MUST_RUN=1 says the CUDA tests must run"; \
      GTEST_SKIP() << "no CUDA device here (" << ::ecmoe::cuda::no_device_reason()         \
                   << "): the CUDA tests run on a GPU machine (scripts/gpu-check.sh)";     \
    }                                                                                      \
  } while (0)

// Whether the tests run on the emulation (tests/cudaemu), where some results are exact that a GPU
// only gives within rounding.
#if ECMOE_CUDA_EMULATED
inline constexpr bool kEmulated = true;
#else
inline constexpr bool kEmulated = false;
#endif

inline cudaStream_t stream() { return context().stream; }

template <typename T>
DeviceVec<T> to_device(const std::vector<T>& host) {
  DeviceVec<T> out;
  out.upload(std::span<const T>(host), stream());
  context().synchronize();
  return out;
}
template <typename T>
std::vector<T> to_host(const DeviceVec<T>& dev) {
  return dev.download(stream());
}

inline std::vector<float> random_normal(size_t n, uint64_t seed, float std = 1.f) {
  const Rng rng(seed, 7);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std * rng.normal(i);
  return v;
}

// Softmax rows of random logits: router scores [n, e].
inline std::vector<float> random_probs(int n, int e, uint64_t seed, float spread = 1.f) {
  std::vector<float> p = random_normal(size_t(n) * e, seed, spread);
  for (int t = 0; t < n; ++t) {
    float m = p[size_t(t) * e], sum = 0.f;
    for (int i = 1; i < e; ++i) m = std::max(m, p[size_t(t) * e + i]);
    for (int i = 0; i < e; ++i) sum += p[size_t(t) * e + i] = std::exp(p[size_t(t) * e + i] - m);
    for (int i = 0; i < e; ++i) p[size_t(t) * e + i] /= sum;
  }
  return p;
}

template <typename T>
::testing::AssertionResult same_bits(const std::vector<T>& gpu, const std::vector<T>& cpu) {
  if (gpu.size() != cpu.size())
    return ::testing::AssertionFailure() << "sizes " << gpu.size() << " vs " << cpu.size();
  for (size_t i = 0; i < gpu.size(); ++i)
    if (std::memcmp(&gpu[i], &cpu[i], sizeof(T)) != 0)
      return ::testing::AssertionFailure()
             << "first difference at " << i << ": " << gpu[i] << " vs " << cpu[i];
  return ::testing::AssertionSuccess();
}

// Every |gpu - cpu| <= rel · (|cpu| + rms(cpu)): relative, with the array's RMS as the floor that
// keeps cancellations near zero from failing it.
// The worst |got − ref| / (|ref| + rms(ref)) over the elements (infinite for a NaN), and where.
template <typename A, typename B>
double worst_relative_error(const A& got, const B& ref, size_t* at = nullptr) {
  double sq = 0;
  for (float c : ref) sq += double(c) * c;
  const double rms = ref.empty() ? 0 : std::sqrt(sq / double(ref.size()));
  double worst = 0;
  for (size_t i = 0; i < got.size() && i < ref.size(); ++i) {
    const double err = std::abs(double(got[i]) - ref[i]) / (std::abs(double(ref[i])) + rms + 1e-30);
    if (!(err <= worst)) {  // NaN counts as the worst
      worst = std::isnan(err) ? INFINITY : err;
      if (at) *at = i;
    }
  }
  return worst;
}

template <typename A, typename B>
::testing::AssertionResult close(const A& gpu, const B& cpu, double rel) {
  if (gpu.size() != cpu.size())
    return ::testing::AssertionFailure() << "sizes " << gpu.size() << " vs " << cpu.size();
  size_t at = 0;
  const double worst = worst_relative_error(gpu, cpu, &at);
  if (worst <= rel) return ::testing::AssertionSuccess();
  double sq = 0;
  for (float c : cpu) sq += double(c) * c;
  const double rms = cpu.empty() ? 0 : std::sqrt(sq / double(cpu.size()));
  return ::testing::AssertionFailure()
         << "relative error " << worst << " > " << rel << " at " << at << ": " << gpu[at] << " vs "
         << cpu[at] << " (rms " << rms << ")";
}

// bf16 arrays as floats, for close().
inline std::vector<float> widen(const std::vector<uint16_t>& h) {
  std::vector<float> out(h.size());
  for (size_t i = 0; i < h.size(); ++i) {
    const uint32_t u = uint32_t(h[i]) << 16;
    std::memcpy(&out[i], &u, sizeof u);
  }
  return out;
}

// A device's routing statistics against the CPU's for the same routing: every count and maximum
// the same; the sums over scores (k-th scores, entropy) within fp32 rounding of the scores.
inline void expect_same_routing_stats(const RoutingStats& gpu, const RoutingStats& cpu) {
  EXPECT_EQ(gpu.tokens, cpu.tokens);
  EXPECT_EQ(gpu.tokens_per_expert, cpu.tokens_per_expert);
  EXPECT_EQ(gpu.experts_per_token, cpu.experts_per_token);
  EXPECT_EQ(gpu.tokens_without_expert, cpu.tokens_without_expert);
  EXPECT_EQ(gpu.requested_assignments, cpu.requested_assignments);
  EXPECT_EQ(gpu.dropped_assignments, cpu.dropped_assignments);
  EXPECT_EQ(gpu.capacity, cpu.capacity);
  EXPECT_EQ(gpu.max_demand_over_capacity, cpu.max_demand_over_capacity);
  EXPECT_EQ(gpu.max_experts_per_token, cpu.max_experts_per_token);
  EXPECT_EQ(gpu.kth_score_groups, cpu.kth_score_groups);
  ASSERT_EQ(gpu.kth_score_sum.size(), cpu.kth_score_sum.size());
  for (size_t i = 0; i < cpu.kth_score_sum.size(); ++i)
    EXPECT_NEAR(gpu.kth_score_sum[i], cpu.kth_score_sum[i], 1e-5 * (1 + cpu.kth_score_sum[i]));
  EXPECT_NEAR(gpu.router_entropy_sum, cpu.router_entropy_sum, 1e-5 * (1 + cpu.router_entropy_sum));
}

}  // namespace ecmoe::cuda::testing
