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

void Backend::projected_attention_forward(float* out, float* saved, float* qkv, float* qkv_saved,
                                          const float* inp, const float* weight, const float* bias,
                                          const AttentionConfig& cfg, const int* valid_len) {
  const int d = cfg.model_dim();
  linear_forward(qkv, qkv_saved, inp, weight, bias, {cfg.batch * cfg.seq_len, d, 3 * d},
                 cfg.precision);
  attention_forward(out, saved, qkv, cfg, valid_len);
}

}  // namespace ecmoe::nn
