#include "moe/expert_gemm_problems.h"

#include <cstdint>

namespace ecmoe {

std::vector<GemmProblem> make_expert_gemms(const RoutingPlan& plan, int d, int f,
                                           ExpertGemmWorkspace& ws, Precision precision) {
  const int64_t S = plan.slot_count(), e = plan.n_experts;
  ws.x_in.assign(S * d, 0.01f);
  ws.pre.assign(S * f, 0.01f);
  ws.out.assign(S * d, 0.01f);
  ws.w1.assign(e * d * f, 0.01f);
  ws.w2.assign(e * f * d, 0.01f);
  ws.dw1.assign(e * d * f, 0.f);
  ws.dw2.assign(e * f * d, 0.f);
  std::vector<GemmProblem> problems;
  for (int i = 0; i < e; ++i) {
    const int rows = plan.expert_load(i);
    if (rows == 0) continue;
    const int64_t s0 = plan.expert_offsets[i];
    float* x = ws.x_in.data() + s0 * d;
    float* h = ws.pre.data() + s0 * f;
    float* o = ws.out.data() + s0 * d;
    const float* w1 = ws.w1.data() + int64_t(i) * d * f;
    const float* w2 = ws.w2.data() + int64_t(i) * f * d;
    problems.push_back(make_gemm(false, false, rows, f, d, x, w1, h));
    problems.push_back(make_gemm(false, false, rows, d, f, h, w2, o));
    problems.push_back(make_gemm(false, true, rows, f, d, o, w2, h));
    problems.push_back(
        make_gemm(true, false, f, d, rows, h, o, ws.dw2.data() + int64_t(i) * f * d, 1.f));
    problems.push_back(
        make_gemm(true, false, d, f, rows, x, h, ws.dw1.data() + int64_t(i) * d * f, 1.f));
    problems.push_back(make_gemm(false, true, rows, d, f, h, w1, x));
  }
  if (precision == Precision::kFp32) return problems;
  // bf16: each operand read from the bf16 copy of its buffer, at the same offset.
  struct Pair {
    const FloatVec* f;
    Bf16Vec* h;
  };
  const Pair pairs[] = {{&ws.x_in, &ws.x_in16},
                        {&ws.pre, &ws.pre16},
                        {&ws.out, &ws.out16},
                        {&ws.w1, &ws.w1_16},
                        {&ws.w2, &ws.w2_16}};
  for (const Pair& p : pairs) {
    p.h->resize(p.f->size());
    convert_to_bf16(p.h->data(), p.f->data(), int64_t(p.f->size()));
  }
  const auto copy_of = [&](const float* x) -> const uint16_t* {
    for (const Pair& p : pairs)
      if (x >= p.f->data() && x < p.f->data() + p.f->size()) return p.h->data() + (x - p.f->data());
    return nullptr;
  };
  for (GemmProblem& p : problems) {
    p.precision = precision;
    p.a_bf16 = copy_of(p.a);
    p.b_bf16 = copy_of(p.b);
  }
  return problems;
}

double expert_gemm_flops(const RoutingPlan& plan, int d, int f) {
  return 12.0 * plan.slot_count() * double(d) * f;
}

}  // namespace ecmoe
