#include "moe/expert_ffn.h"

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "core/gemm.h"
#include "moe/dispatch_combine.h"
#include "nn/gelu.h"

namespace ecmoe {

namespace {

// A GEMM operand in the form the precision reads: fp32 (f) or a bf16 copy (h).
struct Operand {
  const float* f = nullptr;
  const uint16_t* h = nullptr;
  Operand at(int64_t offset) const { return {f ? f + offset : nullptr, h ? h + offset : nullptr}; }
};

GemmProblem problem(bool trans_a, bool trans_b, int m, int n, int k, Operand a, Operand b, float* c,
                    float beta, Precision precision) {
  GemmProblem p = make_gemm(trans_a, trans_b, m, n, k, a.f, b.f, c, beta);
  p.precision = precision;
  p.a_bf16 = a.h;
  p.b_bf16 = b.h;
  return p;
}

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

// The same with a tile epilogue per expert: make_epilogue(s0) for the expert whose slots start at
// s0 (tile rows are relative to the expert's problem).
template <typename AddProblem, typename MakeEpilogue>
void for_each_expert(const RoutingPlan& plan, AddProblem add, MakeEpilogue make_epilogue) {
  std::vector<GemmProblem> problems;
  std::vector<TileEpilogue> epilogues;
  problems.reserve(plan.n_experts);
  epilogues.reserve(plan.n_experts);  // no reallocation: problems point into it
  for (int i = 0; i < plan.n_experts; ++i) {
    const int rows = plan.expert_load(i);
    if (rows == 0) continue;
    problems.push_back(add(i, plan.expert_offsets[i], rows));
    problems.back().epilogue = &epilogues.emplace_back(make_epilogue(plan.expert_offsets[i]));
  }
  gemm_batch(problems);
}

// make_epilogue for for_each_expert when the output is [slots, width], row-major: row_op(at, cols)
// on each row segment of a finished tile, `at` the flat index of the segment's first element.
template <typename RowOp>
auto per_row_epilogue(int64_t width, RowOp row_op) {
  return [=](int s0) {
    return TileEpilogue([=](int m0, int n0, int mm, int cols) {
      for (int r = m0; r < m0 + mm; ++r) row_op((int64_t(s0) + r) * width + n0, cols);
    });
  };
}

// Under kBf16, the bf16 copy of the experts' weights data [e, per_expert] the plan reads (the
// experts with slots; the others' part of `copy` is not written), converted into `copy`; nothing
// under fp32.
void make_bf16_copy(const float* data, int64_t per_expert, const RoutingPlan& plan, Bf16Vec& copy,
                    Precision precision) {
  if (precision == Precision::kFp32) return;
  copy.resize(size_t(int64_t(plan.n_experts) * per_expert));
  for (const ExpertRange& r : experts_with_slots(plan.expert_offsets))
    convert_to_bf16(copy.data() + int64_t(r.begin) * per_expert,
                    data + int64_t(r.begin) * per_expert, int64_t(r.end - r.begin) * per_expert);
}

// fp32 data, or the bf16 form (kept in act) that replaces it under kBf16.
Operand pick(bool bf16, const float* data, const Bf16Vec& form) {
  return bf16 ? Operand{nullptr, form.data()} : Operand{data};
}

// The operands forward saves for backward, as the precision reads them; the weights' bf16
// copies must already be made (forward makes them before it builds these views).
struct SavedOperands {
  Operand w1, w2, x_in, hidden;
};
SavedOperands saved_operands(const ExpertActivations& act, const float* w1, const float* w2,
                             bool bf16) {
  return {pick(bf16, w1, act.w1_16), pick(bf16, w2, act.w2_16),
          pick(bf16, act.x_in.data(), act.x_in16), pick(bf16, act.hidden.data(), act.hidden16)};
}

}  // namespace

void experts_forward(float* y, ExpertActivations& act, const RoutingPlan& plan, const float* x,
                     const float* w1, const float* w2, int d, int f, Precision precision,
                     PhaseTimes* times, const float* residual) {
  phase_start(times);
  const int S = plan.slot_count();
  const bool bf16 = precision == Precision::kBf16;
  act.pre.resize(int64_t(S) * f);
  act.out.resize(int64_t(S) * d);
  if (bf16) {  // the fp32 forms are not kept (their buffers are freed, not just emptied)
    FloatVec().swap(act.x_in);
    FloatVec().swap(act.hidden);
    act.x_in16.resize(int64_t(S) * d);
    act.hidden16.resize(int64_t(S) * f);
  } else {
    act.x_in.resize(int64_t(S) * d);
    act.hidden.resize(int64_t(S) * f);
  }
  make_bf16_copy(w1, int64_t(d) * f, plan, act.w1_16, precision);
  make_bf16_copy(w2, int64_t(f) * d, plan, act.w2_16, precision);
  phase_lap(times, "weights to bf16");

  // Dispatch: slot s copies its token's row (rounded to bf16 on the way under kBf16).
  if (bf16)
    dispatch_forward(act.x_in16.data(), x, plan, d);
  else
    dispatch_forward(act.x_in.data(), x, plan, d);
  const SavedOperands ops = saved_operands(act, w1, w2, bf16);
  const Operand &W1 = ops.w1, &W2 = ops.w2, &X_in = ops.x_in, &Hidden = ops.hidden;
  phase_lap(times, "dispatch");

  // pre = x_in · W1, with GELU applied to each finished tile of pre while it is in cache:
  // hidden = gelu(pre), rounded to bf16 as it is written under kBf16; Phi is not kept.
  float* pre = act.pre.data();
  float* hidden = act.hidden.data();
  uint16_t* hidden16 = act.hidden16.data();
  for_each_expert(
      plan,
      [&](int i, int s0, int rows) {
        return problem(false, false, rows, f, d, X_in.at(int64_t(s0) * d),
                       W1.at(int64_t(i) * d * f), pre + int64_t(s0) * f, 0.f, precision);
      },
      per_row_epilogue(f, [=](int64_t at, int cols) {
        if (bf16)
          nn::gelu_forward_serial(hidden16 + at, pre + at, cols);
        else
          nn::gelu_forward_serial(hidden + at, pre + at, cols);
      }));
  phase_lap(times, "gemm x_in*W1 + gelu");
  for_each_expert(plan, [&](int i, int s0, int rows) {
    return problem(false, false, rows, d, f, Hidden.at(int64_t(s0) * f), W2.at(int64_t(i) * f * d),
                   act.out.data() + int64_t(s0) * d, 0.f, precision);
  });
  phase_lap(times, "gemm hidden*W2");

  // Combine: each token sums its gated slots in expert order (fixed, so deterministic).
  combine_forward(y, act.out.data(), plan, d, residual);
  phase_lap(times, "combine");
}

void experts_backward(float* dx, float* dw1, float* dw2, float* dgate, ExpertScratch& scratch,
                      const float* dy, const ExpertActivations& act, const RoutingPlan& plan,
                      const float* w1, const float* w2, int d, int f, Precision precision,
                      PhaseTimes* times) {
  phase_start(times);
  const int S = plan.slot_count();
  const bool bf16 = precision == Precision::kBf16;
  ECMOE_CHECK(!bf16 || act.x_in16.size() == size_t(S) * d,
              "experts backward: precision differs from the forward's");
  // grad_d [S, d] holds, in fp32, the gradient of the expert output d_out and then (once d_out
  // is dead) the input gradient d_x_in; under kBf16 d_out is in grad_d16 and grad_d holds d_x_in
  // alone. grad_f [S, f] holds d_hidden, the GEMM output GELU's backward reads tile by tile.
  scratch.grad_d.resize(int64_t(S) * d);
  scratch.grad_f.resize(int64_t(S) * f);
  float* d_out = scratch.grad_d.data();
  float* d_hidden = scratch.grad_f.data();
  const SavedOperands ops = saved_operands(act, w1, w2, bf16);
  const Operand &W1 = ops.w1, &W2 = ops.w2, &X_in = ops.x_in, &Hidden = ops.hidden;

  // Adjoint of combine: d_out[s] = gate[s] · dy[t]; dgate[s] = <dy[t], out[s]>. d_out feeds two
  // GEMMs only: under kBf16 it is written in bf16 alone (rounded once, as it is written).
  if (bf16) {
    scratch.grad_d16.resize(size_t(S) * d);
    combine_backward(scratch.grad_d16.data(), dgate, dy, act.out.data(), plan, d);
  } else {
    combine_backward(d_out, dgate, dy, act.out.data(), plan, d);
  }
  const Operand D_out = bf16 ? Operand{nullptr, scratch.grad_d16.data()} : Operand{d_out};
  phase_lap(times, "combine adjoint");

  // d_hidden = d_out · W2^T, with GELU's backward applied to each finished tile while it is in
  // cache: d_pre = gelu'(pre) · d_hidden, in place, or under kBf16 written in bf16 alone (two
  // GEMMs read it).
  if (bf16) scratch.grad_f16.resize(size_t(S) * f);
  uint16_t* d_pre16 = scratch.grad_f16.data();
  const float* pre = act.pre.data();
  for_each_expert(
      plan,
      [&](int i, int s0, int rows) {
        return problem(false, true, rows, f, d, D_out.at(int64_t(s0) * d),
                       W2.at(int64_t(i) * f * d), d_hidden + int64_t(s0) * f, 0.f, precision);
      },
      per_row_epilogue(f, [=](int64_t at, int cols) {
        if (bf16)
          nn::gelu_backward_serial(d_pre16 + at, d_hidden + at, pre + at, cols);
        else
          nn::gelu_backward_serial(d_hidden + at, d_hidden + at, pre + at, cols);
      }));
  phase_lap(times, "gemm d_out*W2^T + gelu'");
  for_each_expert(plan, [&](int i, int s0, int rows) {  // dW2 += hidden^T · d_out
    return problem(true, false, f, d, rows, Hidden.at(int64_t(s0) * f), D_out.at(int64_t(s0) * d),
                   dw2 + int64_t(i) * f * d, 1.f, precision);
  });
  phase_lap(times, "gemm hidden^T*d_out");
  const Operand D_pre = bf16 ? Operand{nullptr, d_pre16} : Operand{d_hidden};
  for_each_expert(plan, [&](int i, int s0, int rows) {  // dW1 += x_in^T · d_pre
    return problem(true, false, d, f, rows, X_in.at(int64_t(s0) * d), D_pre.at(int64_t(s0) * f),
                   dw1 + int64_t(i) * d * f, 1.f, precision);
  });
  phase_lap(times, "gemm x_in^T*d_pre");
  float* d_x_in = scratch.grad_d.data();                // d_out (fp32 or bf16) is dead here
  for_each_expert(plan, [&](int i, int s0, int rows) {  // d_x_in = d_pre · W1^T
    return problem(false, true, rows, d, f, D_pre.at(int64_t(s0) * f), W1.at(int64_t(i) * d * f),
                   d_x_in + int64_t(s0) * d, 0.f, precision);
  });
  phase_lap(times, "gemm d_pre*W1^T");

  // Adjoint of dispatch: each token sums its slots' gradients in expert order.
  dispatch_backward(dx, d_x_in, plan, d);
  phase_lap(times, "dispatch adjoint");
}

}  // namespace ecmoe
