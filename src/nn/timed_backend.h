// A backend that times another: every op is passed to `inner` between two synchronize() calls,
// and its wall time added to `times` under the op's name ("linear", "attention", "layernorm",
// "cross_entropy", "copy", ...: the op's name without _forward/_backward, so an op's forward and
// backward are one entry). The synchronisation costs the device its overlap with the host, so a
// profiled step is slower than a plain one; `ecmoe bench train` profiles extra steps after the
// timed ones (docs/training.md). Memory is the inner backend's: allocations pass through.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/phase_times.h"
#include "nn/backend.h"

namespace ecmoe::nn {

class TimedBackend final : public Backend {
 public:
  TimedBackend(Backend& inner, PhaseTimes& times) : inner_(inner), times_(times) {}
  const char* name() const override { return inner_.name(); }

  void* allocate(std::size_t bytes) override { return inner_.allocate(bytes); }
  void release(void* p) noexcept override { inner_.release(p); }
  void upload(void* dst, const void* host_src, std::size_t bytes) override;
  void download(void* host_dst, const void* src, std::size_t bytes) override;
  void copy(void* dst, const void* src, std::size_t bytes) override;
  void synchronize() override { inner_.synchronize(); }

  void fill(float* x, int64_t n, float value) override;
  void add_inplace(float* acc, const float* x, int64_t n) override;
  void gather_rows(float* dst, const float* src, const int* rows, int m, int dim) override;
  void scatter_add_rows(float* dst, const float* src, const int* rows, int m, int dim) override;
  void embedding_forward(float* out, const int* tokens, const float* token_table,
                         const float* pos_table, const EmbeddingConfig& cfg) override;
  void embedding_backward(float* dtoken_table, float* dpos_table, const float* dout,
                          const int* tokens, const EmbeddingConfig& cfg) override;
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* gain,
                         const float* bias, int rows, int dim) override;
  void layernorm_backward(float* dinp, float* dgain, float* dbias, const float* dout,
                          const float* inp, const float* gain, const float* mean, const float* rstd,
                          int rows, int dim) override;
  int64_t linear_saved_floats(const LinearShape& shape,
                              Precision precision) const override;  // the inner's
  void linear_forward(float* out, float* saved, const float* inp, const float* weight,
                      const float* bias, const LinearShape& shape, Precision precision) override;
  void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                       const float* inp, const float* saved, const float* weight,
                       const LinearShape& shape, Precision precision,
                       GradWrite dinp_write) override;
  void linear_residual_forward(float* out, float* saved, const float* inp, const float* weight,
                               const float* bias, const float* residual, const LinearShape& shape,
                               Precision precision) override;  // timed as "linear"
  // attention_front_forward, attention_ln_floats and attention_qkv_floats are Backend's: the
  // LayerNorm, the projection and the attention run as three ops, each timed under its own name
  // (a device that fuses them keeps forms of their outputs that only its fused op writes).
  int64_t attention_saved_floats(const AttentionConfig& cfg) const override;  // the inner's
  void attention_forward(float* out, float* saved, const float* qkv, const AttentionConfig& cfg,
                         const int* valid_len) override;
  void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                          const float* saved, const AttentionConfig& cfg, const int* valid_len,
                          GradWrite dqkv_write) override;
  void attention_decode(float* out, const float* q, const float* keys, const float* values,
                        const AttentionDecodeConfig& cfg) override;  // timed as "attention"
  void tied_output_forward(float* logits, const float* h, const float* table,
                           const LinearShape& shape, Precision precision) override;
  void tied_output_backward(float* dh, float* dtable, const float* dlogits, const float* h,
                            const float* table, const LinearShape& shape,
                            Precision precision) override;
  void cross_entropy_forward(CrossEntropyResult* result, float* logsumexp, const float* logits,
                             const int* targets, int rows, int vocab) override;
  void wait_for_results() override;  // timed as "cross_entropy" (the loss's copy)
  void cross_entropy_backward(float* dlogits, const float* logits, const float* logsumexp,
                              const int* targets, int64_t count, float dloss, int rows,
                              int vocab) override;

 private:
  // Runs f() on the inner backend and adds its time to `op`.
  template <typename F>
  auto timed(const char* op, F&& f);
  Backend& inner_;
  PhaseTimes& times_;
};

}  // namespace ecmoe::nn
