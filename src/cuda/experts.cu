#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "cuda/expert_gemm.h"
#include "cuda/experts.h"
#include "cuda/moe_ops.h"
#include "cuda/nn_ops.h"
#include "moe/routing_plan.h"

namespace ecmoe::cuda {

void experts_forward(float* y, DeviceExpertActivations& act, const DevicePlan& plan, const float* x,
                     const float* w1, const float* w2, int d, int f, Precision precision,
                     const Context& ctx, PhaseTimes* times, const float* residual) {
  phase_start(times, ctx);
  const int S = plan.slot_count(), e = plan.n_experts;
  const bool bf16 = precision == Precision::kBf16;
  cudaStream_t stream = ctx.stream;
  act.precision = precision;
  // A dense layer's plan (slot t is token t, gate 1): the second GEMM writes y, no combine.
  const bool identity = plan.identity;
  act.pre.resize(size_t(S) * f);
  if (!identity) act.out.resize(size_t(S) * d);
  const void *x_in, *hidden, *W1 = w1, *W2 = w2;
  if (bf16) {
    act.x_in16.resize(size_t(S) * d);
    act.hidden16.resize(size_t(S) * f);
    const int64_t per_expert = int64_t(d) * f;
    act.w1_bf16 = ctx.bf16_weights(w1, e * per_expert);
    act.w2_bf16 = ctx.bf16_weights(w2, e * per_expert);
    if (act.w1_bf16 == nullptr || act.w2_bf16 == nullptr) {
      act.w1_16.resize(size_t(e) * d * f);
      act.w2_16.resize(size_t(e) * f * d);
      // Only the experts with slots are read: a decoded token converts its few experts' weights.
      for (const ExpertRange& r : experts_with_slots(plan.expert_offsets_host)) {
        const int64_t at = int64_t(r.begin) * per_expert,
                      count = int64_t(r.end - r.begin) * per_expert;
        to_bf16(act.w1_16.data() + at, w1 + at, count, stream);
        to_bf16(act.w2_16.data() + at, w2 + at, count, stream);
      }
      act.w1_bf16 = act.w1_16.data();
      act.w2_bf16 = act.w2_16.data();
    } else if (!act.w1_16.empty()) {  // the first step's own copies are not needed any more
      act.w1_16.release();
      act.w2_16.release();
    }
    phase_lap(times, ctx, "weights to bf16");
    dispatch_forward(act.x_in16.data(), x, plan, d, stream);
    x_in = act.x_in16.data();
    hidden = act.hidden16.data();
    W1 = act.w1_bf16;
    W2 = act.w2_bf16;
  } else {
    act.x_in.resize(size_t(S) * d);
    act.hidden.resize(size_t(S) * f);
    dispatch_forward(act.x_in.data(), x, plan, d, stream);
    x_in = act.x_in.data();
    hidden = act.hidden.data();
  }
  phase_lap(times, ctx, "dispatch");
  expert_gemm_rows(ctx.blas, plan, false, f, d, x_in, W1, act.pre.data(), precision);
  phase_lap(times, ctx, "gemm x_in*W1");
  if (bf16)
    gelu_forward(act.hidden16.data(), act.pre.data(), int64_t(S) * f, stream);
  else
    gelu_forward(act.hidden.data(), act.pre.data(), int64_t(S) * f, stream);
  phase_lap(times, ctx, "gelu");
  // A dense layer's y = hidden · W2 (+ the residual, in bf16 in the GEMM's epilogue).
  bool residual_added = false;
  if (identity && residual && bf16 && f > 0) {
    const Gemm g{.m = S, .n = d, .k = f, .a = hidden, .b = W2, .c = y};
    residual_added = act.residual_gemm.run(g, nullptr, ctx, {nullptr, residual});
  }
  if (!residual_added)
    expert_gemm_rows(ctx.blas, plan, false, d, f, hidden, W2, identity ? y : act.out.data(),
                     precision);
  phase_lap(times, ctx, "gemm hidden*W2");
  if (!identity)
    combine_forward(y, act.out.data(), plan, d, stream, residual);
  else if (residual && !residual_added)
    add_inplace(y, residual, int64_t(S) * d, stream);
  phase_lap(times, ctx, "combine");
}

void experts_backward(float* dx, float* dw1, float* dw2, float* dgate, DeviceExpertScratch& scratch,
                      const float* dy, const DeviceExpertActivations& act, const DevicePlan& plan,
                      const float* w1, const float* w2, int d, int f, const Context& ctx,
                      PhaseTimes* times, nn::GradWrite dx_write) {
  phase_start(times, ctx);
  const int S = plan.slot_count();
  const Precision precision = act.precision;
  const bool bf16 = precision == Precision::kBf16;
  ECMOE_CHECK(act.pre.size() == size_t(S) * f, "cuda experts backward: no forward for this plan");
  cudaStream_t stream = ctx.stream;
  // A dense layer's plan: d_out is dy (rounded in bf16), and d_x_in goes into dx by its GEMM.
  // Constant gates have no gradient: dgate is not computed.
  const bool identity = plan.identity;
  if (plan.gate_kind == GateKind::kConstant) dgate = nullptr;
  if (!identity) scratch.grad_d.resize(size_t(S) * d);
  scratch.grad_f.resize(size_t(S) * f);
  const void *W1 = w1, *W2 = w2, *x_in = act.x_in.data(), *hidden = act.hidden.data();
  const void *d_out, *d_pre;
  if (bf16) {
    W1 = act.w1_bf16;
    W2 = act.w2_bf16;
    x_in = act.x_in16.data();
    hidden = act.hidden16.data();
    scratch.grad_d16.resize(size_t(S) * d);
    scratch.grad_f16.resize(size_t(S) * f);
    if (identity)
      to_bf16(scratch.grad_d16.data(), dy, int64_t(S) * d, stream);
    else
      combine_backward(scratch.grad_d16.data(), dgate, dy, act.out.data(), plan, d, stream);
    d_out = scratch.grad_d16.data();
    d_pre = scratch.grad_f16.data();
  } else {
    if (!identity)
      combine_backward(scratch.grad_d.data(), dgate, dy, act.out.data(), plan, d, stream);
    d_out = identity ? dy : scratch.grad_d.data();
    d_pre = scratch.grad_f.data();
  }
  phase_lap(times, ctx, "combine adjoint");
  // d_hidden = d_out · W2^T, then d_pre = gelu'(pre) · d_hidden (fp32 in place, or bf16).
  expert_gemm_rows(ctx.blas, plan, true, f, d, d_out, W2, scratch.grad_f.data(), precision);
  phase_lap(times, ctx, "gemm d_out*W2^T");
  if (bf16)
    gelu_backward(scratch.grad_f16.data(), scratch.grad_f.data(), act.pre.data(), int64_t(S) * f,
                  stream);
  else
    gelu_backward(scratch.grad_f.data(), scratch.grad_f.data(), act.pre.data(), int64_t(S) * f,
                  stream);
  phase_lap(times, ctx, "gelu'");
  // Written whole here: where they are logically zero (a training step's first backward, after
  // Context::grads' lazy zeroing), with beta 0, and neither zeroed nor read before.
  const int64_t weights = int64_t(plan.n_experts) * d * f;
  const auto claimed = [&](float* dw) {
    return ctx.grads.claim(dw, weights, stream) ? nn::GradWrite::kOverwrite : nn::GradWrite::kAdd;
  };
  const nn::GradWrite dw2_write = claimed(dw2), dw1_write = claimed(dw1);
  expert_gemm_weight_grad(ctx.blas, plan, f, d, hidden, d_out, dw2, precision,
                          dw2_write);  // hidden^T·d_out
  phase_lap(times, ctx, "gemm hidden^T*d_out");
  expert_gemm_weight_grad(ctx.blas, plan, d, f, x_in, d_pre, dw1, precision,
                          dw1_write);  // x_in^T·d_pre
  phase_lap(times, ctx, "gemm x_in^T*d_pre");
  // d_x_in = d_pre · W1^T into grad_d (fp32 d_out is dead once dW2 is done: same stream order),
  // or into dx directly as dx_write says (identity: the dispatch adjoint would move the same rows).
  expert_gemm_rows(ctx.blas, plan, true, d, f, d_pre, W1, identity ? dx : scratch.grad_d.data(),
                   precision, identity ? dx_write : nn::GradWrite::kOverwrite);
  phase_lap(times, ctx, "gemm d_pre*W1^T");
  if (!identity)
    dispatch_backward(dx, scratch.grad_d.data(), plan, d, stream,
                      dx_write == nn::GradWrite::kOverwrite);
  phase_lap(times, ctx, "dispatch adjoint");
}

}  // namespace ecmoe::cuda
