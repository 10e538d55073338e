// nn::Backend's composite ops by default: each is the ops it stands for, one after the other. A
// device that fuses them overrides them (cuda/nn_backend.cu).
#include "nn/backend.h"

#include <cstdint>

namespace ecmoe::nn {

void Backend::linear_residual_forward(float* out, float* saved, const float* inp,
                                      const float* weight, const float* bias, const float* residual,
                                      const LinearShape& shape, Precision precision) {
  linear_forward(out, saved, inp, weight, bias, shape, precision);
  add_inplace(out, residual, int64_t(shape.rows) * shape.out_dim);
}

void Backend::attention_front_forward(float* out, const AttentionFrontState& s, const float* x,
                                      const AttentionFrontWeights& w, const AttentionConfig& cfg,
                                      const int* valid_len) {
  const LinearShape shape = attention_qkv_shape(cfg);
  layernorm_forward(s.ln_out, s.ln_mean, s.ln_rstd, x, w.ln_gain, w.ln_bias, shape.rows,
                    shape.in_dim);
  linear_forward(s.qkv, s.qkv_saved, s.ln_out, w.qkv_w, w.qkv_b, shape, cfg.precision);
  attention_forward(out, s.saved, s.qkv, cfg, valid_len);
}

}  // namespace ecmoe::nn
