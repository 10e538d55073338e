#include "moe/expert_ffn.h"

#include <cstdint>
#include <cstring>
#include <vector>

#include "core/gemm.h"
#include "nn/gelu.h"

namespace ecmoe {

namespace {

// One GEMM per expert over its slot rows, all in one parallel loop.
// rows_a: the expert's slots of `a` [S, k]; b: the expert's weight (stride per expert).
template <typename AddProblem>
void for_each_expert(const RoutingPlan& plan, AddProblem add) {
  std::vector<GemmProblem> problems;
  problems.reserve(plan.n_experts);
  for (int i = 0; i < plan.n_experts; ++i) {
    const int rows = plan.expert_load(i);
    if (rows > 0) problems.push_back(add(i, plan.expert_offsets[i], rows));
  }
  gemm_batch(problems);
}

}  // namespace

void experts_forward(float* y, ExpertActivations& act, const RoutingPlan& plan, const float* x,
                     const float* w1, const float* w2, int d, int f) {
  const int S = plan.slot_count(), n = plan.n_tokens;
  act.x_in.resize(int64_t(S) * d);
  act.pre.resize(int64_t(S) * f);
  act.hidden.resize(int64_t(S) * f);
  act.cdf.resize(int64_t(S) * f);
  act.out.resize(int64_t(S) * d);

#pragma omp parallel for schedule(static)
  for (int s = 0; s < S; ++s)
    std::memcpy(act.x_in.data() + int64_t(s) * d, x + int64_t(plan.slot_token[s]) * d,
                sizeof(float) * d);

  for_each_expert(plan, [&](int i, int s0, int rows) {
    return make_gemm(false, false, rows, f, d, act.x_in.data() + int64_t(s0) * d,
                     w1 + int64_t(i) * d * f, act.pre.data() + int64_t(s0) * f);
  });
  nn::gelu_forward(act.hidden.data(), act.cdf.data(), act.pre.data(), int64_t(S) * f);
  for_each_expert(plan, [&](int i, int s0, int rows) {
    return make_gemm(false, false, rows, d, f, act.hidden.data() + int64_t(s0) * f,
                     w2 + int64_t(i) * f * d, act.out.data() + int64_t(s0) * d);
  });

  // Combine: each token sums its slots in expert order (fixed, so deterministic).
#pragma omp parallel for schedule(static)
  for (int t = 0; t < n; ++t) {
    float* yt = y + int64_t(t) * d;
    std::memset(yt, 0, sizeof(float) * d);
    for (int j = plan.token_offsets[t]; j < plan.token_offsets[t + 1]; ++j) {
      const int s = plan.token_slots[j];
      const float g = plan.slot_gate[s];
      const float* o = act.out.data() + int64_t(s) * d;
      for (int c = 0; c < d; ++c) yt[c] += g * o[c];
    }
  }
}

void experts_backward(float* dx, float* dw1, float* dw2, float* dgate, ExpertScratch& scratch,
                      const float* dy, const ExpertActivations& act, const RoutingPlan& plan,
                      const float* w1, const float* w2, int d, int f) {
  const int S = plan.slot_count(), n = plan.n_tokens;
  scratch.grad_d.resize(int64_t(S) * d);
  scratch.grad_f.resize(int64_t(S) * f);
  float* d_out = scratch.grad_d.data();     // [S, d] gradient of the expert output
  float* d_hidden = scratch.grad_f.data();  // [S, f]

  // Adjoint of combine: d_out[s] = gate[s] · dy[t]; dgate[s] = <dy[t], out[s]>.
#pragma omp parallel for schedule(static)
  for (int s = 0; s < S; ++s) {
    const float* dyt = dy + int64_t(plan.slot_token[s]) * d;
    const float* o = act.out.data() + int64_t(s) * d;
    const float g = plan.slot_gate[s];
    float* dos = d_out + int64_t(s) * d;
    float dot = 0.f;
    for (int c = 0; c < d; ++c) {
      dos[c] = g * dyt[c];
      dot += dyt[c] * o[c];
    }
    dgate[s] = dot;
  }

  for_each_expert(plan, [&](int i, int s0, int rows) {  // d_hidden = d_out · W2^T
    return make_gemm(false, true, rows, f, d, d_out + int64_t(s0) * d, w2 + int64_t(i) * f * d,
                     d_hidden + int64_t(s0) * f);
  });
  for_each_expert(plan, [&](int i, int s0, int rows) {  // dW2 += hidden^T · d_out
    return make_gemm(true, false, f, d, rows, act.hidden.data() + int64_t(s0) * f,
                     d_out + int64_t(s0) * d, dw2 + int64_t(i) * f * d, 1.f);
  });
  nn::gelu_backward(d_hidden, d_hidden, act.pre.data(), act.cdf.data(), int64_t(S) * f);  // d_pre
  for_each_expert(plan, [&](int i, int s0, int rows) {  // dW1 += x_in^T · d_pre
    return make_gemm(true, false, d, f, rows, act.x_in.data() + int64_t(s0) * d,
                     d_hidden + int64_t(s0) * f, dw1 + int64_t(i) * d * f, 1.f);
  });
  float* d_x_in = d_out;  // d_out is dead: reuse it for the gathered-input gradient
  for_each_expert(plan, [&](int i, int s0, int rows) {  // d_x_in = d_pre · W1^T
    return make_gemm(false, true, rows, d, f, d_hidden + int64_t(s0) * f, w1 + int64_t(i) * d * f,
                     d_x_in + int64_t(s0) * d);
  });

  // Adjoint of dispatch: each token sums its slots' gradients in expert order.
#pragma omp parallel for schedule(static)
  for (int t = 0; t < n; ++t) {
    float* dxt = dx + int64_t(t) * d;
    for (int j = plan.token_offsets[t]; j < plan.token_offsets[t + 1]; ++j) {
      const float* g = d_x_in + int64_t(plan.token_slots[j]) * d;
      for (int c = 0; c < d; ++c) dxt[c] += g[c];
    }
  }
}

}  // namespace ecmoe
