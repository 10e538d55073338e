// A backend for the model tests that counts every op by name and runs the CPU's (nn/backend.h):
// whatever runs through it computes bitwise what the CPU backend computes, in memory of its own
// (allocate, upload, download and copy go through it too), so a test sees which ops reached the
// seam and that the results did not change on the way. Causal and bidirectional attention are
// counted apart ("attention_forward causal").
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "nn/backend.h"

namespace ecmoe::testing {

class RecordingBackend final : public nn::Backend {
 public:
  std::map<std::string, int> calls;
  int released = 0;
  const char* name() const override { return "recording"; }
  void* allocate(std::size_t bytes) override {
    ++calls["allocate"];
    return cpu().allocate(bytes);
  }
  void release(void* p) noexcept override {
    ++released;
    cpu().release(p);
  }
  void upload(void* dst, const void* host_src, std::size_t bytes) override {
    ++calls["upload"];
    cpu().upload(dst, host_src, bytes);
  }
  void download(void* host_dst, const void* src, std::size_t bytes) override {
    ++calls["download"];
    cpu().download(host_dst, src, bytes);
  }
  void copy(void* dst, const void* src, std::size_t bytes) override {
    ++calls["copy"];
    cpu().copy(dst, src, bytes);
  }
  void fill(float* x, int64_t n, float value) override {
    ++calls["fill"];
    cpu().fill(x, n, value);
  }
  void add_inplace(float* acc, const float* x, int64_t n) override {
    ++calls["add_inplace"];
    cpu().add_inplace(acc, x, n);
  }
  void gather_rows(float* dst, const float* src, const int* rows, int m, int dim) override {
    ++calls["gather_rows"];
    cpu().gather_rows(dst, src, rows, m, dim);
  }
  void scatter_add_rows(float* dst, const float* src, const int* rows, int m, int dim) override {
    ++calls["scatter_add_rows"];
    cpu().scatter_add_rows(dst, src, rows, m, dim);
  }
  void embedding_forward(float* out, const int* tokens, const float* token_table,
                         const float* pos_table, const nn::EmbeddingConfig& cfg) override {
    ++calls["embedding_forward"];
    cpu().embedding_forward(out, tokens, token_table, pos_table, cfg);
  }
  void embedding_backward(float* dtoken_table, float* dpos_table, const float* dout,
                          const int* tokens, const nn::EmbeddingConfig& cfg) override {
    ++calls["embedding_backward"];
    cpu().embedding_backward(dtoken_table, dpos_table, dout, tokens, cfg);
  }
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* gain,
                         const float* bias, int rows, int dim) override {
    ++calls["layernorm_forward"];
    cpu().layernorm_forward(out, mean, rstd, inp, gain, bias, rows, dim);
  }
  void layernorm_backward(float* dinp, float* dgain, float* dbias, const float* dout,
                          const float* inp, const float* gain, const float* mean, const float* rstd,
                          int rows, int dim) override {
    ++calls["layernorm_backward"];
    cpu().layernorm_backward(dinp, dgain, dbias, dout, inp, gain, mean, rstd, rows, dim);
  }
  int64_t linear_saved_floats(const nn::LinearShape& shape, Precision precision) const override {
    return cpu().linear_saved_floats(shape, precision);
  }
  void linear_forward(float* out, float* saved, const float* inp, const float* weight,
                      const float* bias, const nn::LinearShape& shape,
                      Precision precision) override {
    ++calls["linear_forward"];
    cpu().linear_forward(out, saved, inp, weight, bias, shape, precision);
  }
  void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                       const float* inp, const float* saved, const float* weight,
                       const nn::LinearShape& shape, Precision precision,
                       nn::GradWrite dinp_write) override {
    ++calls["linear_backward"];
    cpu().linear_backward(dinp, dweight, dbias, dout, inp, saved, weight, shape, precision,
                          dinp_write);
  }
  // The composite ops count themselves, then run as Backend's default: the ops they stand for,
  // through this backend (so those count too).
  void linear_residual_forward(float* out, float* saved, const float* inp, const float* weight,
                               const float* bias, const float* residual,
                               const nn::LinearShape& shape, Precision precision) override {
    ++calls["linear_residual_forward"];
    nn::Backend::linear_residual_forward(out, saved, inp, weight, bias, residual, shape, precision);
  }
  void attention_front_forward(float* out, const nn::AttentionFrontState& s, const float* x,
                               const nn::AttentionFrontWeights& w, const nn::AttentionConfig& cfg,
                               const int* valid_len) override {
    ++calls["attention_front_forward"];
    nn::Backend::attention_front_forward(out, s, x, w, cfg, valid_len);
  }
  int64_t attention_saved_floats(const nn::AttentionConfig& cfg) const override {
    return cpu().attention_saved_floats(cfg);
  }
  void attention_forward(float* out, float* saved, const float* qkv, const nn::AttentionConfig& cfg,
                         const int* valid_len) override {
    ++calls[cfg.causal ? "attention_forward causal" : "attention_forward"];
    cpu().attention_forward(out, saved, qkv, cfg, valid_len);
  }
  void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                          const float* saved, const nn::AttentionConfig& cfg, const int* valid_len,
                          nn::GradWrite dqkv_write) override {
    ++calls[cfg.causal ? "attention_backward causal" : "attention_backward"];
    cpu().attention_backward(dqkv, dout, qkv, out, saved, cfg, valid_len, dqkv_write);
  }
  void attention_decode(float* out, const float* q, const float* keys, const float* values,
                        const nn::AttentionDecodeConfig& cfg) override {
    ++calls["attention_decode"];
    cpu().attention_decode(out, q, keys, values, cfg);
  }
  void tied_output_forward(float* logits, const float* h, const float* table,
                           const nn::LinearShape& shape, Precision precision) override {
    ++calls["tied_output_forward"];
    cpu().tied_output_forward(logits, h, table, shape, precision);
  }
  void tied_output_backward(float* dh, float* dtable, const float* dlogits, const float* h,
                            const float* table, const nn::LinearShape& shape,
                            Precision precision) override {
    ++calls["tied_output_backward"];
    cpu().tied_output_backward(dh, dtable, dlogits, h, table, shape, precision);
  }
  void cross_entropy_forward(nn::CrossEntropyResult* result, float* logsumexp, const float* logits,
                             const int* targets, int rows, int vocab) override {
    ++calls["cross_entropy_forward"];
    cpu().cross_entropy_forward(result, logsumexp, logits, targets, rows, vocab);
  }
  void cross_entropy_backward(float* dlogits, const float* logits, const float* logsumexp,
                              const int* targets, int64_t count, float dloss, int rows,
                              int vocab) override {
    ++calls["cross_entropy_backward"];
    cpu().cross_entropy_backward(dlogits, logits, logsumexp, targets, count, dloss, rows, vocab);
  }

 private:
  static nn::Backend& cpu() { return nn::cpu_backend(); }
};

}  // namespace ecmoe::testing
