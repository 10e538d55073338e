// The dense model's GEMM layers on the GPU through cuBLAS (cuda::gemm): nn/linear.h's linear
// layer and nn/tied_output.h's tied output layer, forward beside backward, with the CPU op's
// shapes, layouts (row-major, W [in_dim, out_dim], the table [vocab, dim]) and accumulation rules
// (backward adds into its gradients; nullptr skips one). fp32 is cuBLAS's pedantic fp32 (no
// TF32); bf16 rounds both operands of every GEMM to bf16 as the CPU does (cuda::to_bf16, the
// CPU's bits) and accumulates and writes fp32. Against the CPU within float tolerance (another
// summation order); the same bits run to run (cuBLAS in its default mode on one stream, the bias
// gradient in cuda/nn_ops.h's fixed order).
#pragma once
#include <cstdint>

#include "core/precision.h"
#include "cuda/context.h"
#include "cuda/device_buffer.h"
#include "cuda/gemm_bias.h"
#include "cuda/nn_ops.h"
#include "nn/grad_write.h"
#include "nn/linear.h"

namespace ecmoe::cuda {

// bf16 copies of the GEMM operands (made per call, as the CPU rounds per call) and the bias
// gradient's partial sums.
struct LinearScratch {
  DeviceVec<uint16_t> x16;  // the input (linear) or h (tied output)
  DeviceVec<uint16_t> w16;  // the weight or the table
  DeviceVec<uint16_t> d16;  // the output gradient
  ColumnSumScratch bias_sums;
  GemmBias bias_gemm;      // the forward's GEMM with its bias in the epilogue (bf16)
  DeviceVec<float> out32;  // linear_forward_bf16's fp32 result where cuBLASLt took no epilogue
};

// What linear_forward keeps for linear_backward (nn::Backend's linear `saved`), in floats: in
// bf16, inp's bf16 copy [rows, in_dim] (rows · in_dim / 2, rounded up); in fp32, nothing.
int64_t linear_saved_floats(const nn::LinearShape& shape, Precision precision);

// nn::linear_forward: out [rows, out_dim] = inp [rows, in_dim] · weight [in_dim, out_dim] + bias
// [out_dim] (or nullptr): in bf16 the bias added in the GEMM's epilogue (cuda/gemm_bias.h), else
// (fp32, or no cuBLASLt algorithm) the bias broadcast into out, then the GEMM with beta 1, as the
// CPU. Each element is the accumulated product plus the bias either way.
// inp16, if given (bf16 only; linear_saved_floats(shape, precision) floats), receives inp's bf16
// copy, which the GEMM reads; else the scratch holds it.
void linear_forward(float* out, uint16_t* inp16, const float* inp, const float* weight,
                    const float* bias, const nn::LinearShape& shape, Precision precision,
                    LinearScratch& scratch, const Context& ctx);
// linear_forward with its output in bf16 only (bf16 precision): out16 [rows, out_dim] =
// bf16(inp · weight + bias), the bits of cuda::to_bf16 over linear_forward's out, rounded in the
// GEMM's epilogue (or, where cuBLASLt takes no such epilogue, from an fp32 scratch). For a
// consumer that reads only the bf16 copy: the fp32 output is neither written nor read.
// inp nullptr: inp16 already holds the input's bf16 copy (written by its producer, e.g. the
// bf16 LayerNorm), which the GEMM reads as it is.
void linear_forward_bf16(uint16_t* out16, uint16_t* inp16, const float* inp, const float* weight,
                         const float* bias, const nn::LinearShape& shape, LinearScratch& scratch,
                         const Context& ctx);
// linear_forward with a residual added: out = inp · weight + bias + residual (nn::Backend's
// linear_residual_forward; out must not alias residual). In bf16 with a bias, in the GEMM's
// epilogue, product + residual + bias (cuda/gemm_bias.h); else linear_forward, then the
// residual added, as the CPU.
void linear_residual_forward(float* out, uint16_t* inp16, const float* inp, const float* weight,
                             const float* bias, const float* residual, const nn::LinearShape& shape,
                             Precision precision, LinearScratch& scratch, const Context& ctx);
// nn::linear_backward: dinp += dout · Wᵀ (kOverwrite: dinp = ..., beta 0, not read), dweight +=
// inpᵀ · dout, dbias += dout's column sums. inp16, if given, is the forward's bf16 copy of inp,
// which the weight gradient reads instead of rounding inp again (on `gpu-small`, 3.6 GB of
// traffic a step, counted); inp may then be nullptr.
void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const uint16_t* inp16, const float* weight, const nn::LinearShape& shape,
                     Precision precision, LinearScratch& scratch, const Context& ctx,
                     nn::GradWrite dinp_write = nn::GradWrite::kAdd);

// nn::tied_output_forward: logits [rows, vocab] = h [rows, dim] · tableᵀ ([vocab, dim]); shape
// {rows, in_dim = dim, out_dim = vocab}.
void tied_output_forward(float* logits, const float* h, const float* table,
                         const nn::LinearShape& shape, Precision precision, LinearScratch& scratch,
                         const Context& ctx);
// nn::tied_output_backward: dh += dlogits · table, dtable += dlogitsᵀ · h.
void tied_output_backward(float* dh, float* dtable, const float* dlogits, const float* h,
                          const float* table, const nn::LinearShape& shape, Precision precision,
                          LinearScratch& scratch, const Context& ctx);

}  // namespace ecmoe::cuda
