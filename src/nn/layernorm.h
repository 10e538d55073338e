// LayerNorm over the last dimension, with gain and bias: out = (x − mean) · rstd · gain + bias,
// rstd = 1 / sqrt(var + eps), biased variance, eps 1e-5 (as in PyTorch).
#pragma once

namespace ecmoe::nn {

inline constexpr float kLayerNormEps = 1e-5f;

// out, inp: [rows, dim]; gain, bias: [dim]; mean, rstd: [rows], saved for the backward pass.
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* gain,
                       const float* bias, int rows, int dim);
// Accumulates (+=) into dinp [rows, dim], dgain [dim], dbias [dim].
void layernorm_backward(float* dinp, float* dgain, float* dbias, const float* dout,
                        const float* inp, const float* gain, const float* mean, const float* rstd,
                        int rows, int dim);

}  // namespace ecmoe::nn
