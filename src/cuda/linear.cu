#include <cstddef>
#include <cstdint>

#include "cuda/expert_gemm.h"
#include "cuda/linear.h"
#include "cuda/moe_ops.h"

namespace ecmoe::cuda {

namespace {

// x [n] as a GEMM operand: itself in fp32, else its bf16 copy in `copy`.
const void* operand(const float* x, int64_t n, DeviceVec<uint16_t>& copy, Precision precision,
                    cudaStream_t stream) {
  if (precision != Precision::kBf16) return x;
  copy.resize(size_t(n));
  to_bf16(copy.data(), x, n, stream);
  return copy.data();
}

// A weight w [n] as a GEMM operand: as operand(), but in bf16 the training parameters' copy
// (Context::params_bf16) where it holds w, with the same bits.
const void* weight_operand(const float* w, int64_t n, DeviceVec<uint16_t>& copy,
                           Precision precision, const Context& ctx) {
  if (precision == Precision::kBf16)
    if (const uint16_t* kept = ctx.bf16_weights(w, n)) return kept;
  return operand(w, n, copy, precision, ctx.stream);
}

}  // namespace

int64_t linear_saved_floats(const nn::LinearShape& s, Precision precision) {
  return precision == Precision::kBf16 ? (int64_t(s.rows) * s.in_dim + 1) / 2 : 0;
}

namespace {

// linear_forward's three outputs: fp32 into out, fp32 plus a residual into out, or bf16 into
// out16 (the rounding of the fp32 result).
void linear_forward_any(float* out, uint16_t* out16, const float* residual, uint16_t* inp16,
                        const float* inp, const float* weight, const float* bias,
                        const nn::LinearShape& s, Precision precision, LinearScratch& scratch,
                        const Context& ctx) {
  if (s.rows == 0 || s.out_dim == 0) return;
  const int64_t n_in = int64_t(s.rows) * s.in_dim, n_out = int64_t(s.rows) * s.out_dim;
  const void* a = nullptr;
  if (inp16 && precision == Precision::kBf16) {
    if (inp) to_bf16(inp16, inp, n_in, ctx.stream);  // else inp16 holds it already
    a = inp16;
  } else {
    a = operand(inp, n_in, scratch.x16, precision, ctx.stream);
  }
  const void* w =
      weight_operand(weight, int64_t(s.in_dim) * s.out_dim, scratch.w16, precision, ctx);
  Gemm g;
  g.m = s.rows;
  g.n = s.out_dim;
  g.k = s.in_dim;
  g.a = a;
  g.b = w;
  g.c = out;
  // bf16 with a bias: the bias (and the residual, or the rounding to bf16) in the GEMM's
  // epilogue, the output written once (cuda/gemm_bias.h).
  if (bias && precision == Precision::kBf16 && s.in_dim > 0 &&
      scratch.bias_gemm.run(g, bias, ctx, {out16, residual}))
    return;
  // Else as the CPU: the bias broadcast into out, then the GEMM with beta 1; then the residual
  // added, or the result rounded into out16 from a scratch.
  if (out16) {
    scratch.out32.resize(size_t(n_out));
    g.c = scratch.out32.data();
  }
  if (bias) broadcast_rows(g.c, bias, s.rows, s.out_dim, ctx.stream);
  g.beta = bias ? 1.f : 0.f;
  gemm(ctx.blas, g, precision);
  if (residual) add_inplace(out, residual, n_out, ctx.stream);
  if (out16) to_bf16(out16, g.c, n_out, ctx.stream);
}

}  // namespace

void linear_forward(float* out, uint16_t* inp16, const float* inp, const float* weight,
                    const float* bias, const nn::LinearShape& s, Precision precision,
                    LinearScratch& scratch, const Context& ctx) {
  linear_forward_any(out, nullptr, nullptr, inp16, inp, weight, bias, s, precision, scratch, ctx);
}

void linear_forward_bf16(uint16_t* out16, uint16_t* inp16, const float* inp, const float* weight,
                         const float* bias, const nn::LinearShape& s, LinearScratch& scratch,
                         const Context& ctx) {
  linear_forward_any(nullptr, out16, nullptr, inp16, inp, weight, bias, s, Precision::kBf16,
                     scratch, ctx);
}

void linear_residual_forward(float* out, uint16_t* inp16, const float* inp, const float* weight,
                             const float* bias, const float* residual, const nn::LinearShape& s,
                             Precision precision, LinearScratch& scratch, const Context& ctx) {
  linear_forward_any(out, nullptr, residual, inp16, inp, weight, bias, s, precision, scratch, ctx);
}

void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const uint16_t* inp16, const float* weight, const nn::LinearShape& s,
                     Precision precision, LinearScratch& scratch, const Context& ctx,
                     nn::GradWrite dinp_write) {
  if (s.rows == 0) return;
  const void* d = nullptr;
  if (dinp || dweight)
    d = operand(dout, int64_t(s.rows) * s.out_dim, scratch.d16, precision, ctx.stream);
  if (dinp) {  // dinp [rows, in] += dout [rows, out] · Wᵀ (W stored [in, out])
    Gemm g;
    g.trans_b = true;
    g.m = s.rows;
    g.n = s.in_dim;
    g.k = s.out_dim;
    g.a = d;
    g.b = weight_operand(weight, int64_t(s.in_dim) * s.out_dim, scratch.w16, precision, ctx);
    g.c = dinp;
    g.beta = dinp_write == nn::GradWrite::kOverwrite ? 0.f : 1.f;
    gemm(ctx.blas, g, precision);
  }
  if (dweight) {  // dW [in, out] += inpᵀ · dout (inp stored [rows, in])
    Gemm g;
    g.trans_a = true;
    g.m = s.in_dim;
    g.n = s.out_dim;
    g.k = s.rows;
    g.a = inp16 && precision == Precision::kBf16
              ? inp16
              : operand(inp, int64_t(s.rows) * s.in_dim, scratch.x16, precision, ctx.stream);
    g.b = d;
    g.c = dweight;
    g.beta = 1.f;
    gemm(ctx.blas, g, precision);
  }
  if (dbias) add_column_sums(dbias, dout, s.rows, s.out_dim, scratch.bias_sums, ctx.stream);
}

void tied_output_forward(float* logits, const float* h, const float* table,
                         const nn::LinearShape& s, Precision precision, LinearScratch& scratch,
                         const Context& ctx) {
  if (s.rows == 0 || s.out_dim == 0) return;
  Gemm g;  // logits [rows, vocab] = h [rows, dim] · tableᵀ (table stored [vocab, dim])
  g.trans_b = true;
  g.m = s.rows;
  g.n = s.out_dim;
  g.k = s.in_dim;
  g.a = operand(h, int64_t(s.rows) * s.in_dim, scratch.x16, precision, ctx.stream);
  g.b = weight_operand(table, int64_t(s.out_dim) * s.in_dim, scratch.w16, precision, ctx);
  g.c = logits;
  gemm(ctx.blas, g, precision);
}

void tied_output_backward(float* dh, float* dtable, const float* dlogits, const float* h,
                          const float* table, const nn::LinearShape& s, Precision precision,
                          LinearScratch& scratch, const Context& ctx) {
  if (s.rows == 0 || (!dh && !dtable)) return;
  const void* d = operand(dlogits, int64_t(s.rows) * s.out_dim, scratch.d16, precision, ctx.stream);
  if (dh) {  // dh [rows, dim] += dlogits [rows, vocab] · table [vocab, dim]
    Gemm g;
    g.m = s.rows;
    g.n = s.in_dim;
    g.k = s.out_dim;
    g.a = d;
    g.b = weight_operand(table, int64_t(s.out_dim) * s.in_dim, scratch.w16, precision, ctx);
    g.c = dh;
    g.beta = 1.f;
    gemm(ctx.blas, g, precision);
  }
  if (dtable) {  // dtable [vocab, dim] += dlogitsᵀ · h (dlogits stored [rows, vocab])
    Gemm g;
    g.trans_a = true;
    g.m = s.out_dim;
    g.n = s.in_dim;
    g.k = s.rows;
    g.a = d;
    g.b = operand(h, int64_t(s.rows) * s.in_dim, scratch.x16, precision, ctx.stream);
    g.c = dtable;
    g.beta = 1.f;
    gemm(ctx.blas, g, precision);
  }
}

}  // namespace ecmoe::cuda
