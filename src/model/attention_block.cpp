// h_in, h_out are [rows, d], qkv is [rows, 3d], saved is the backend's attention state
#include "model/attention_block.h"

#include <cstdint>

namespace ecmoe {
namespace {

int64_t rows_of(const nn::AttentionConfig& cfg) { return int64_t(cfg.batch) * cfg.seq_len; }
nn::LinearShape out_shape(const nn::AttentionConfig& cfg) {
  return {int(rows_of(cfg)), cfg.model_dim(), cfg.model_dim()};
}

}  // namespace

void AttentionBlockActivations::resize(nn::Backend& be, const nn::AttentionConfig& cfg) {
  const int64_t rows = rows_of(cfg), d = cfg.model_dim();
  ln_out.resize(be, be.attention_ln_floats(cfg));
  ln_mean.resize(be, rows);
  ln_rstd.resize(be, rows);
  qkv.resize(be, be.attention_qkv_floats(cfg));
  saved.resize(be, be.attention_saved_floats(cfg));
  att.resize(be, rows * d);
  qkv_saved.resize(be, be.linear_saved_floats(nn::attention_qkv_shape(cfg), cfg.precision));
  out_saved.resize(be, be.linear_saved_floats(out_shape(cfg), cfg.precision));
}

void AttentionBlockScratch::resize(nn::Backend& be, const nn::AttentionConfig& cfg) {
  const int64_t rows = rows_of(cfg), d = cfg.model_dim();
  d_att.resize(be, rows * d);
  d_qkv.resize(be, rows * 3 * d);
}

void attention_block_forward(nn::Backend& be, float* h_out, AttentionBlockActivations& act,
                             const float* h_in, const AttentionBlockWeights& w,
                             const nn::AttentionConfig& cfg, const int* valid_len) {
  act.resize(be, cfg);
  const nn::AttentionFrontState front{act.ln_out.data(), act.ln_mean.data(),   act.ln_rstd.data(),
                                      act.qkv.data(),    act.qkv_saved.data(), act.saved.data()};
  be.attention_front_forward(act.att.data(), front, h_in, {w.ln_gain, w.ln_bias, w.qkv_w, w.qkv_b},
                             cfg, valid_len);
  // The projection lands in h_out with the residual added: no temporary.
  be.linear_residual_forward(h_out, act.out_saved.data(), act.att.data(), w.out_w, w.out_b, h_in,
                             out_shape(cfg), cfg.precision);
}

void attention_block_backward(nn::Backend& be, float* dh, AttentionBlockGrads& g,
                              AttentionBlockScratch& scratch, const AttentionBlockActivations& act,
                              const float* h_in, const AttentionBlockWeights& w,
                              const nn::AttentionConfig& cfg, const int* valid_len) {
  const int rows = int(rows_of(cfg)), d = cfg.model_dim();
  scratch.resize(be, cfg);
  float* d_att = scratch.d_att.data();
  float* d_qkv = scratch.d_qkv.data();
  // Each input gradient has one writer here, which writes it over whatever the scratch holds:
  // no zero fills, and no reading them back (GradWrite::kOverwrite).
  constexpr nn::GradWrite kOverwrite = nn::GradWrite::kOverwrite;
  be.linear_backward(d_att, g.out_w, g.out_b, dh, act.att.data(), act.out_saved.data(), w.out_w,
                     out_shape(cfg), cfg.precision, kOverwrite);
  be.attention_backward(d_qkv, d_att, act.qkv.data(), act.att.data(), act.saved.data(), cfg,
                        valid_len, kOverwrite);
  float* d_ln = d_att;  // d(att) is spent: reuse its buffer for d(ln_out)
  be.linear_backward(d_ln, g.qkv_w, g.qkv_b, d_qkv, act.ln_out.data(), act.qkv_saved.data(),
                     w.qkv_w, nn::attention_qkv_shape(cfg), cfg.precision, kOverwrite);
  // dh already holds the residual's share (dL/dh_out); the LayerNorm path adds the rest.
  be.layernorm_backward(dh, g.ln_gain, g.ln_bias, d_ln, h_in, w.ln_gain, act.ln_mean.data(),
                        act.ln_rstd.data(), rows, d);
}

}  // namespace ecmoe
