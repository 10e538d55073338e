#include "moe/dispatch_combine.h"

#include <cstring>

#include "core/bf16.h"
#include "core/vecmath.h"

namespace ecmoe {

namespace {

template <typename T>
void dispatch_rows(T* x_slots, const float* x, const RoutingPlan& plan, int d) {
  const int S = plan.slot_count();
#pragma omp parallel for schedule(static)
  for (int s = 0; s < S; ++s) {
    const float* src = x + int64_t(plan.slot_token[s]) * d;
    T* dst = x_slots + int64_t(s) * d;
    if constexpr (sizeof(T) == sizeof(float))
      std::memcpy(dst, src, sizeof(float) * d);
    else
      for (int c = 0; c < d; ++c) dst[c] = float_to_bf16(src[c]);
  }
}

template <typename T>
void combine_adjoint(T* d_out, float* dgate, const float* dy, const float* out,
                     const RoutingPlan& plan, int d) {
  const int S = plan.slot_count();
#pragma omp parallel for schedule(static)
  for (int s = 0; s < S; ++s) {
    const float* dyt = dy + int64_t(plan.slot_token[s]) * d;
    const float g = plan.slot_gate[s];
    T* dos = d_out + int64_t(s) * d;
    if constexpr (sizeof(T) == sizeof(float))
      for (int c = 0; c < d; ++c) dos[c] = g * dyt[c];
    else
      for (int c = 0; c < d; ++c) dos[c] = float_to_bf16(g * dyt[c]);
    dgate[s] = dot_fixed(dyt, out + int64_t(s) * d, d);
  }
}

}  // namespace

void dispatch_forward(float* x_slots, const float* x, const RoutingPlan& plan, int d) {
  dispatch_rows(x_slots, x, plan, d);
}

void dispatch_forward(uint16_t* x_slots16, const float* x, const RoutingPlan& plan, int d) {
  dispatch_rows(x_slots16, x, plan, d);
}

void dispatch_backward(float* dx, const float* d_slots, const RoutingPlan& plan, int d) {
  const int n = plan.n_tokens;
#pragma omp parallel for schedule(static)
  for (int t = 0; t < n; ++t) {
    float* dxt = dx + int64_t(t) * d;
    for (int j = plan.token_offsets[t]; j < plan.token_offsets[t + 1]; ++j) {
      const float* g = d_slots + int64_t(plan.token_slots[j]) * d;
      for (int c = 0; c < d; ++c) dxt[c] += g[c];
    }
  }
}

void combine_forward(float* y, const float* out, const RoutingPlan& plan, int d,
                     const float* residual) {
  const int n = plan.n_tokens;
#pragma omp parallel for schedule(static)
  for (int t = 0; t < n; ++t) {
    float* yt = y + int64_t(t) * d;
    std::memset(yt, 0, sizeof(float) * d);
    for (int j = plan.token_offsets[t]; j < plan.token_offsets[t + 1]; ++j) {
      const int s = plan.token_slots[j];
      const float g = plan.slot_gate[s];
      const float* o = out + int64_t(s) * d;
      for (int c = 0; c < d; ++c) yt[c] += g * o[c];
    }
    if (residual) {
      const float* r = residual + int64_t(t) * d;
      for (int c = 0; c < d; ++c) yt[c] += r[c];
    }
  }
}

void combine_backward(float* d_out, float* dgate, const float* dy, const float* out,
                      const RoutingPlan& plan, int d) {
  combine_adjoint(d_out, dgate, dy, out, plan, d);
}

void combine_backward(uint16_t* d_out16, float* dgate, const float* dy, const float* out,
                      const RoutingPlan& plan, int d) {
  combine_adjoint(d_out16, dgate, dy, out, plan, d);
}

}  // namespace ecmoe
