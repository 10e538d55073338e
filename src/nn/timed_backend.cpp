#include "nn/timed_backend.h"

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "core/timer.h"

namespace ecmoe::nn {

template <typename F>
auto TimedBackend::timed(const char* op, F&& f) {
  inner_.synchronize();
  const double t0 = now_seconds();
  if constexpr (std::is_void_v<decltype(f())>) {
    f();
    inner_.synchronize();
    times_.add(op, now_seconds() - t0);
  } else {
    auto result = f();
    inner_.synchronize();
    times_.add(op, now_seconds() - t0);
    return result;
  }
}

void TimedBackend::upload(void* dst, const void* host_src, std::size_t bytes) {
  timed("upload", [&] { inner_.upload(dst, host_src, bytes); });
}
void TimedBackend::download(void* host_dst, const void* src, std::size_t bytes) {
  timed("download", [&] { inner_.download(host_dst, src, bytes); });
}
void TimedBackend::copy(void* dst, const void* src, std::size_t bytes) {
  timed("copy", [&] { inner_.copy(dst, src, bytes); });
}
void TimedBackend::fill(float* x, int64_t n, float value) {
  timed("fill", [&] { inner_.fill(x, n, value); });
}
void TimedBackend::add_inplace(float* acc, const float* x, int64_t n) {
  timed("add", [&] { inner_.add_inplace(acc, x, n); });
}
void TimedBackend::gather_rows(float* dst, const float* src, const int* rows, int m, int dim) {
  timed("gather_rows", [&] { inner_.gather_rows(dst, src, rows, m, dim); });
}
void TimedBackend::scatter_add_rows(float* dst, const float* src, const int* rows, int m, int dim) {
  timed("gather_rows", [&] { inner_.scatter_add_rows(dst, src, rows, m, dim); });
}
void TimedBackend::embedding_forward(float* out, const int* tokens, const float* token_table,
                                     const float* pos_table, const EmbeddingConfig& cfg) {
  timed("embedding", [&] { inner_.embedding_forward(out, tokens, token_table, pos_table, cfg); });
}
void TimedBackend::embedding_backward(float* dtoken_table, float* dpos_table, const float* dout,
                                      const int* tokens, const EmbeddingConfig& cfg) {
  timed("embedding",
        [&] { inner_.embedding_backward(dtoken_table, dpos_table, dout, tokens, cfg); });
}
void TimedBackend::layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                                     const float* gain, const float* bias, int rows, int dim) {
  timed("layernorm",
        [&] { inner_.layernorm_forward(out, mean, rstd, inp, gain, bias, rows, dim); });
}
void TimedBackend::layernorm_backward(float* dinp, float* dgain, float* dbias, const float* dout,
                                      const float* inp, const float* gain, const float* mean,
                                      const float* rstd, int rows, int dim) {
  timed("layernorm", [&] {
    inner_.layernorm_backward(dinp, dgain, dbias, dout, inp, gain, mean, rstd, rows, dim);
  });
}
int64_t TimedBackend::linear_saved_floats(const LinearShape& shape, Precision precision) const {
  return inner_.linear_saved_floats(shape, precision);
}
void TimedBackend::linear_forward(float* out, float* saved, const float* inp, const float* weight,
                                  const float* bias, const LinearShape& shape,
                                  Precision precision) {
  timed("linear", [&] { inner_.linear_forward(out, saved, inp, weight, bias, shape, precision); });
}
void TimedBackend::linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                                   const float* inp, const float* saved, const float* weight,
                                   const LinearShape& shape, Precision precision,
                                   GradWrite dinp_write) {
  timed("linear", [&] {
    inner_.linear_backward(dinp, dweight, dbias, dout, inp, saved, weight, shape, precision,
                           dinp_write);
  });
}
void TimedBackend::linear_residual_forward(float* out, float* saved, const float* inp,
                                           const float* weight, const float* bias,
                                           const float* residual, const LinearShape& shape,
                                           Precision precision) {
  timed("linear", [&] {
    inner_.linear_residual_forward(out, saved, inp, weight, bias, residual, shape, precision);
  });
}
int64_t TimedBackend::attention_saved_floats(const AttentionConfig& cfg) const {
  return inner_.attention_saved_floats(cfg);
}
void TimedBackend::attention_forward(float* out, float* saved, const float* qkv,
                                     const AttentionConfig& cfg, const int* valid_len) {
  timed("attention", [&] { inner_.attention_forward(out, saved, qkv, cfg, valid_len); });
}
void TimedBackend::attention_backward(float* dqkv, const float* dout, const float* qkv,
                                      const float* out, const float* saved,
                                      const AttentionConfig& cfg, const int* valid_len,
                                      GradWrite dqkv_write) {
  timed("attention", [&] {
    inner_.attention_backward(dqkv, dout, qkv, out, saved, cfg, valid_len, dqkv_write);
  });
}
void TimedBackend::attention_decode(float* out, const float* q, const float* keys,
                                    const float* values, const AttentionDecodeConfig& cfg) {
  timed("attention", [&] { inner_.attention_decode(out, q, keys, values, cfg); });
}
void TimedBackend::tied_output_forward(float* logits, const float* h, const float* table,
                                       const LinearShape& shape, Precision precision) {
  timed("tied_output", [&] { inner_.tied_output_forward(logits, h, table, shape, precision); });
}
void TimedBackend::tied_output_backward(float* dh, float* dtable, const float* dlogits,
                                        const float* h, const float* table,
                                        const LinearShape& shape, Precision precision) {
  timed("tied_output",
        [&] { inner_.tied_output_backward(dh, dtable, dlogits, h, table, shape, precision); });
}
void TimedBackend::cross_entropy_forward(CrossEntropyResult* result, float* logsumexp,
                                         const float* logits, const int* targets, int rows,
                                         int vocab) {
  timed("cross_entropy",
        [&] { inner_.cross_entropy_forward(result, logsumexp, logits, targets, rows, vocab); });
}
void TimedBackend::wait_for_results() {
  timed("cross_entropy", [&] { inner_.wait_for_results(); });
}
void TimedBackend::cross_entropy_backward(float* dlogits, const float* logits,
                                          const float* logsumexp, const int* targets, int64_t count,
                                          float dloss, int rows, int vocab) {
  timed("cross_entropy", [&] {
    inner_.cross_entropy_backward(dlogits, logits, logsumexp, targets, count, dloss, rows, vocab);
  });
}

}  // namespace ecmoe::nn
