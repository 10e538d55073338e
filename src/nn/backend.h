// The transformer's dense ops behind one interface, so that one model (model/transformer.h) runs
// on the CPU or on another device: the model calls these, never the kernels directly. Each op is
// the nn op of the same name (its header states shapes and semantics); a backend for another
// device implements every one of them and is tested against the CPU's (tests/cuda for CUDA).
// Every float pointer is in the backend's memory; index arrays (tokens, targets, rows, key
// lengths) too. The CPU backend is the nn functions themselves.
#pragma once
#include <cstddef>
#include <cstdint>

#include "nn/attention.h"
#include "nn/attention_decode.h"
#include "nn/cross_entropy.h"
#include "nn/embedding.h"
#include "nn/grad_write.h"
#include "nn/linear.h"

namespace ecmoe::nn {

// The attention sublayer's front (Backend::attention_front_forward): its weights, and what it
// keeps for the backward, all in the backend's memory.
struct AttentionFrontWeights {
  const float* ln_gain = nullptr;  // [d]
  const float* ln_bias = nullptr;  // [d]
  const float* qkv_w = nullptr;    // [d, 3d]
  const float* qkv_b = nullptr;    // [3d]
};
// The qkv projection's shape: {rows = batch · seq_len, d, 3d}.
inline LinearShape attention_qkv_shape(const AttentionConfig& cfg) {
  return {cfg.batch * cfg.seq_len, cfg.model_dim(), 3 * cfg.model_dim()};
}
struct AttentionFrontState {
  float* ln_out = nullptr;     // the LayerNorm's output: attention_ln_floats(cfg) floats
  float* ln_mean = nullptr;    // [rows]
  float* ln_rstd = nullptr;    // [rows]
  float* qkv = nullptr;        // attention_qkv_floats(cfg) floats
  float* qkv_saved = nullptr;  // the projection's saved state (linear_saved_floats)
  float* saved = nullptr;      // the attention's saved state (attention_saved_floats)
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;  // "cpu", "cuda"

  // Memory (nn/buffer.h owns it): bytes in this backend's memory, and copies into it from the
  // host, out of it to the host (returning once the bytes are there) and within it. A copy is
  // ordered after the ops issued before it.
  virtual void* allocate(std::size_t bytes) = 0;
  virtual void release(void* p) noexcept = 0;
  virtual void upload(void* dst, const void* host_src, std::size_t bytes) = 0;
  virtual void download(void* host_dst, const void* src, std::size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, std::size_t bytes) = 0;
  // Returns once every op issued before it is done (for timing them: nn/timed_backend.h). The
  // CPU's ops are done when they return.
  virtual void synchronize() {}
  // Returns once the values queued for the host (cross_entropy_forward's result) are there.
  virtual void wait_for_results() {}

  // x[0, n) = value
  virtual void fill(float* x, int64_t n, float value) = 0;
  // acc += x over [n] (residual.h)
  virtual void add_inplace(float* acc, const float* x, int64_t n) = 0;
  // gather_rows.h
  virtual void gather_rows(float* dst, const float* src, const int* rows, int m, int dim) = 0;
  virtual void scatter_add_rows(float* dst, const float* src, const int* rows, int m, int dim) = 0;

  // embedding.h
  virtual void embedding_forward(float* out, const int* tokens, const float* token_table,
                                 const float* pos_table, const EmbeddingConfig& cfg) = 0;
  virtual void embedding_backward(float* dtoken_table, float* dpos_table, const float* dout,
                                  const int* tokens, const EmbeddingConfig& cfg) = 0;
  // layernorm.h
  virtual void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                                 const float* gain, const float* bias, int rows, int dim) = 0;
  virtual void layernorm_backward(float* dinp, float* dgain, float* dbias, const float* dout,
                                  const float* inp, const float* gain, const float* mean,
                                  const float* rstd, int rows, int dim) = 0;
  // linear.h. `saved` (as attention's below) is what the forward keeps for its backward, opaque to
  // the caller: linear_saved_floats(shape, precision) floats in this backend's memory, written by
  // the forward and read by the backward of the same inp. By default (the CPU) nothing; CUDA in
  // bf16 keeps inp's bf16 copy, so that the weight gradient does not round inp again. nullptr
  // in both calls (a forward with no backward, or a caller that keeps nothing) is always allowed:
  // the backward then works from inp alone.
  virtual int64_t linear_saved_floats(const LinearShape& /*shape*/, Precision /*precision*/) const {
    return 0;
  }
  virtual void linear_forward(float* out, float* saved, const float* inp, const float* weight,
                              const float* bias, const LinearShape& shape, Precision precision) = 0;
  virtual void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                               const float* inp, const float* saved, const float* weight,
                               const LinearShape& shape, Precision precision,
                               GradWrite dinp_write) = 0;
  // linear_forward with a residual added: out = inp · weight + bias + residual [rows, out_dim]
  // (a sublayer's output projection landing in the residual stream; out aliases neither inp nor
  // residual). Its backward is linear_backward (the residual's gradient is dout itself). By
  // default linear_forward, then add_inplace; a device may add the residual inside the GEMM.
  virtual void linear_residual_forward(float* out, float* saved, const float* inp,
                                       const float* weight, const float* bias,
                                       const float* residual, const LinearShape& shape,
                                       Precision precision);
  // attention.h. `saved` is what the forward keeps for its backward, opaque to the caller:
  // attention_saved_floats(cfg) floats in this backend's memory, written by the forward and read
  // by the backward of the same cfg, qkv and valid_len. By default (the CPU) the probabilities
  // [batch, heads, T, T]; a fused kernel keeps less (CUDA's flash attention: the rows'
  // logsumexp, [batch, heads, T]). The backward also gets the forward's output `out` [batch, T,
  // d] (a fused kernel's softmax backward needs rowsum(dO ⊙ O)).
  virtual int64_t attention_saved_floats(const AttentionConfig& cfg) const {
    return int64_t(cfg.batch) * cfg.n_heads * cfg.seq_len * cfg.seq_len;
  }
  virtual void attention_forward(float* out, float* saved, const float* qkv,
                                 const AttentionConfig& cfg, const int* valid_len) = 0;
  virtual void attention_backward(float* dqkv, const float* dout, const float* qkv,
                                  const float* out, const float* saved, const AttentionConfig& cfg,
                                  const int* valid_len, GradWrite dqkv_write) = 0;
  // The attention sublayer's front as one op, x [rows, d] -> out [rows, d]: LayerNorm (s.ln_out,
  // ln_mean, ln_rstd), the qkv projection of its output (linear_forward's, with its saved state
  // s.qkv_saved), then attention_forward over qkv (s.saved). A backend may keep the LayerNorm's
  // output and qkv in its own form: s.ln_out holds attention_ln_floats(cfg) floats and s.qkv
  // attention_qkv_floats(cfg), and the backward gets those pointers back (linear_backward's inp,
  // attention_backward's qkv). By default the three ops, and both in full, [rows, d] and
  // [rows, 3d]. (CUDA's flash attention keeps neither: the LayerNorm writes the bf16 copy the
  // projection reads and keeps for its weight gradient, the projection's GEMM writes the bf16
  // qkv the attention reads, into `saved`, and the fp32 forms are neither written nor read.)
  virtual int64_t attention_ln_floats(const AttentionConfig& cfg) const {
    const LinearShape s = attention_qkv_shape(cfg);
    return int64_t(s.rows) * s.in_dim;
  }
  virtual int64_t attention_qkv_floats(const AttentionConfig& cfg) const {
    const LinearShape s = attention_qkv_shape(cfg);
    return int64_t(s.rows) * s.out_dim;
  }
  virtual void attention_front_forward(float* out, const AttentionFrontState& s, const float* x,
                                       const AttentionFrontWeights& w, const AttentionConfig& cfg,
                                       const int* valid_len);
  // attention_decode.h: one query row over a KV cache (incremental decoding; no backward)
  virtual void attention_decode(float* out, const float* q, const float* keys, const float* values,
                                const AttentionDecodeConfig& cfg) = 0;
  // tied_output.h
  virtual void tied_output_forward(float* logits, const float* h, const float* table,
                                   const LinearShape& shape, Precision precision) = 0;
  virtual void tied_output_backward(float* dh, float* dtable, const float* dlogits, const float* h,
                                    const float* table, const LinearShape& shape,
                                    Precision precision) = 0;
  // cross_entropy.h. The loss comes back to the host in *result, valid once wait_for_results()
  // has returned: a device queues its copy and goes on, so the host can queue more work (the
  // backward pass) before it waits; the CPU writes it at once. *result must outlive that wait.
  virtual void cross_entropy_forward(CrossEntropyResult* result, float* logsumexp,
                                     const float* logits, const int* targets, int rows,
                                     int vocab) = 0;
  virtual void cross_entropy_backward(float* dlogits, const float* logits, const float* logsumexp,
                                      const int* targets, int64_t count, float dloss, int rows,
                                      int vocab) = 0;
};

// The CPU backend: the nn functions, on the caller's threads. One instance, stateless.
Backend& cpu_backend();

}  // namespace ecmoe::nn
