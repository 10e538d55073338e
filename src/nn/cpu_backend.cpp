// The CPU backend of nn/backend.h: each op is the nn function of the same name.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "nn/attention.h"
#include "nn/attention_decode.h"
#include "nn/backend.h"
#include "nn/cross_entropy.h"
#include "nn/embedding.h"
#include "nn/gather_rows.h"
#include "nn/layernorm.h"
#include "nn/linear.h"
#include "nn/residual.h"
#include "nn/tied_output.h"

namespace ecmoe::nn {

namespace {

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  // 64-byte aligned, as FloatVec (core/aligned.h): one cache line, one AVX-512 register.
  void* allocate(std::size_t bytes) override {
    constexpr std::size_t kAlign = 64;
    void* p = std::aligned_alloc(kAlign, std::max(kAlign, (bytes + kAlign - 1) / kAlign * kAlign));
    if (!p) throw std::bad_alloc();
    return p;
  }
  void release(void* p) noexcept override { std::free(p); }
  void upload(void* dst, const void* host_src, std::size_t bytes) override {
    if (bytes) std::memcpy(dst, host_src, bytes);
  }
  void download(void* host_dst, const void* src, std::size_t bytes) override {
    if (bytes) std::memcpy(host_dst, src, bytes);
  }
  void copy(void* dst, const void* src, std::size_t bytes) override {
    if (bytes) std::memmove(dst, src, bytes);
  }
  void fill(float* x, int64_t n, float value) override { std::fill(x, x + n, value); }
  void add_inplace(float* acc, const float* x, int64_t n) override { nn::add_inplace(acc, x, n); }
  void gather_rows(float* dst, const float* src, const int* rows, int m, int dim) override {
    nn::gather_rows(dst, src, rows, m, dim);
  }
  void scatter_add_rows(float* dst, const float* src, const int* rows, int m, int dim) override {
    nn::scatter_add_rows(dst, src, rows, m, dim);
  }
  void embedding_forward(float* out, const int* tokens, const float* token_table,
                         const float* pos_table, const EmbeddingConfig& cfg) override {
    nn::embedding_forward(out, tokens, token_table, pos_table, cfg);
  }
  void embedding_backward(float* dtoken_table, float* dpos_table, const float* dout,
                          const int* tokens, const EmbeddingConfig& cfg) override {
    nn::embedding_backward(dtoken_table, dpos_table, dout, tokens, cfg);
  }
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* gain,
                         const float* bias, int rows, int dim) override {
    nn::layernorm_forward(out, mean, rstd, inp, gain, bias, rows, dim);
  }
  void layernorm_backward(float* dinp, float* dgain, float* dbias, const float* dout,
                          const float* inp, const float* gain, const float* mean, const float* rstd,
                          int rows, int dim) override {
    nn::layernorm_backward(dinp, dgain, dbias, dout, inp, gain, mean, rstd, rows, dim);
  }
  // saved: nothing (Backend's default linear_saved_floats).
  void linear_forward(float* out, float* /*saved*/, const float* inp, const float* weight,
                      const float* bias, const LinearShape& shape, Precision precision) override {
    nn::linear_forward(out, inp, weight, bias, shape, precision);
  }
  // kOverwrite: zeros, then the nn op's adding (the bits of a caller's zero fill).
  void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                       const float* inp, const float* /*saved*/, const float* weight,
                       const LinearShape& shape, Precision precision,
                       GradWrite dinp_write) override {
    if (dinp && dinp_write == GradWrite::kOverwrite)
      std::fill_n(dinp, std::size_t(shape.rows) * std::size_t(shape.in_dim), 0.f);
    nn::linear_backward(dinp, dweight, dbias, dout, inp, weight, shape, precision);
  }
  // saved: the probabilities [batch, heads, T, T] (Backend's default attention_saved_floats).
  void attention_forward(float* out, float* saved, const float* qkv, const AttentionConfig& cfg,
                         const int* valid_len) override {
    nn::attention_forward(out, saved, qkv, cfg, valid_len);
  }
  // out (the forward's output) is not needed here.
  void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* /*out*/,
                          const float* saved, const AttentionConfig& cfg, const int* valid_len,
                          GradWrite dqkv_write) override {
    if (dqkv_write == GradWrite::kOverwrite)
      std::fill_n(dqkv, std::size_t(cfg.batch) * std::size_t(cfg.seq_len) * 3 * cfg.model_dim(),
                  0.f);
    nn::attention_backward(dqkv, dout, qkv, saved, cfg, valid_len);
  }
  void attention_decode(float* out, const float* q, const float* keys, const float* values,
                        const AttentionDecodeConfig& cfg) override {
    nn::attention_decode(out, q, keys, values, cfg);
  }
  void tied_output_forward(float* logits, const float* h, const float* table,
                           const LinearShape& shape, Precision precision) override {
    nn::tied_output_forward(logits, h, table, shape, precision);
  }
  void tied_output_backward(float* dh, float* dtable, const float* dlogits, const float* h,
                            const float* table, const LinearShape& shape,
                            Precision precision) override {
    nn::tied_output_backward(dh, dtable, dlogits, h, table, shape, precision);
  }
  void cross_entropy_forward(CrossEntropyResult* result, float* logsumexp, const float* logits,
                             const int* targets, int rows, int vocab) override {
    *result = nn::cross_entropy_forward(logsumexp, logits, targets, rows, vocab);
  }
  void cross_entropy_backward(float* dlogits, const float* logits, const float* logsumexp,
                              const int* targets, int64_t count, float dloss, int rows,
                              int vocab) override {
    nn::cross_entropy_backward(dlogits, logits, logsumexp, targets, count, dloss, rows, vocab);
  }
};

}  // namespace

Backend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

}  // namespace ecmoe::nn
