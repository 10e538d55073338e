// nn::Backend on the GPU: each op calls the CUDA kernel of the same name with the backend's
// scratch buffers; shapes and semantics are the nn op's (nn/backend.h).
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "cuda/attention.h"
#include "cuda/attention_decode.h"
#include "cuda/context.h"
#include "cuda/cuda_check.h"
#include "cuda/device_buffer.h"
#include "cuda/flash_attention.h"
#include "cuda/launch.cuh"
#include "cuda/linear.h"
#include "cuda/loss.h"
#include "cuda/nn_backend.h"
#include "cuda/nn_ops.h"
#include "cuda/pinned_staging.h"
#include "cuda/readback.h"
#include "nn/cross_entropy.h"

namespace ecmoe::cuda {

namespace {

__global__ void fill_kernel(float* x, int64_t n, float value) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] = value;
}

class CudaNnBackend final : public nn::Backend {
 public:
  explicit CudaNnBackend(const NnBackendOptions& options) : ctx_(context()), options_(options) {}
  const char* name() const override { return "cuda"; }

  void* allocate(std::size_t bytes) override {
    void* p = nullptr;
    ECMOE_CUDA_CHECK(cudaMalloc(&p, bytes == 0 ? 1 : bytes));
    return p;
  }
  void release(void* p) noexcept override { cudaFree(p); }
  // Staged in pinned memory (cuda/pinned_staging.h): the source may be reused at once, and the
  // host does not wait for the device.
  // A write into the training parameters makes their bf16 copy stale (Context::params_bf16);
  // gradients that are logically zero are zeroed before a copy or fill uses them
  // (Context::grads).
  void upload(void* dst, const void* host_src, std::size_t bytes) override {
    ctx_.wrote(dst, bytes);
    upload_async(dst, host_src, bytes, ctx_.stream);
  }
  void download(void* host_dst, const void* src, std::size_t bytes) override {
    if (!bytes) return;
    ctx_.reading(src, bytes);
    ECMOE_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, ctx_.stream));
    ctx_.synchronize();
  }
  void copy(void* dst, const void* src, std::size_t bytes) override {
    ctx_.reading(src, bytes);
    ctx_.wrote(dst, bytes);
    if (bytes)
      ECMOE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx_.stream));
  }

  void synchronize() override { ctx_.synchronize(); }

  void fill(float* x, int64_t n, float value) override {
    if (n <= 0) return;
    ctx_.wrote(x, size_t(n) * sizeof(float));
    const int threads = 256;
    const int64_t blocks = std::min<int64_t>((n + threads - 1) / threads, 65536);
    launch(fill_kernel, unsigned(blocks), threads, 0, ctx_.stream, x, n, value);
  }
  void add_inplace(float* acc, const float* x, int64_t n) override {
    ctx_.reading(acc, size_t(n) * sizeof(float));
    cuda::add_inplace(acc, x, n, ctx_.stream);
  }
  void gather_rows(float* dst, const float* src, const int* rows, int m, int dim) override {
    cuda::gather_rows(dst, src, rows, m, dim, ctx_.stream);
  }
  void scatter_add_rows(float* dst, const float* src, const int* rows, int m, int dim) override {
    cuda::scatter_add_rows(dst, src, rows, m, dim, ctx_.stream);
  }
  void embedding_forward(float* out, const int* tokens, const float* token_table,
                         const float* pos_table, const nn::EmbeddingConfig& cfg) override {
    cuda::embedding_forward(out, tokens, token_table, pos_table, cfg, ctx_.stream);
  }
  void embedding_backward(float* dtoken_table, float* dpos_table, const float* dout,
                          const int* tokens, const nn::EmbeddingConfig& cfg) override {
    cuda::embedding_backward(dtoken_table, dpos_table, dout, tokens, cfg, embedding_, ctx_.stream);
  }
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* gain,
                         const float* bias, int rows, int dim) override {
    cuda::layernorm_forward(out, mean, rstd, inp, gain, bias, rows, dim, ctx_.stream);
  }
  void layernorm_backward(float* dinp, float* dgain, float* dbias, const float* dout,
                          const float* inp, const float* gain, const float* mean, const float* rstd,
                          int rows, int dim) override {
    cuda::layernorm_backward(dinp, dgain, dbias, dout, inp, gain, mean, rstd, rows, dim,
                             column_sums_, ctx_.stream);
  }
  // saved: in bf16, inp's bf16 copy (the forward's GEMM operand, the backward's for dW).
  int64_t linear_saved_floats(const nn::LinearShape& shape, Precision precision) const override {
    return cuda::linear_saved_floats(shape, precision);
  }
  void linear_forward(float* out, float* saved, const float* inp, const float* weight,
                      const float* bias, const nn::LinearShape& shape,
                      Precision precision) override {
    cuda::linear_forward(out, reinterpret_cast<uint16_t*>(saved), inp, weight, bias, shape,
                         precision, linear_, ctx_);
  }
  void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                       const float* inp, const float* saved, const float* weight,
                       const nn::LinearShape& shape, Precision precision,
                       nn::GradWrite dinp_write) override {
    cuda::linear_backward(dinp, dweight, dbias, dout, inp, reinterpret_cast<const uint16_t*>(saved),
                          weight, shape, precision, linear_, ctx_, dinp_write);
  }
  // In bf16, the residual added in the GEMM's epilogue (cuda/gemm_bias.h).
  void linear_residual_forward(float* out, float* saved, const float* inp, const float* weight,
                               const float* bias, const float* residual,
                               const nn::LinearShape& shape, Precision precision) override {
    cuda::linear_residual_forward(out, reinterpret_cast<uint16_t*>(saved), inp, weight, bias,
                                  residual, shape, precision, linear_, ctx_);
  }
  // saved: the rows' logsumexp [B, H, T] and the bf16 qkv on the flash path, else the
  // probabilities.
  int64_t attention_saved_floats(const nn::AttentionConfig& cfg) const override {
    if (flash(cfg)) return flash_attention_saved_floats(cfg);
    return nn::Backend::attention_saved_floats(cfg);
  }
  void attention_forward(float* out, float* saved, const float* qkv, const nn::AttentionConfig& cfg,
                         const int* valid_len) override {
    if (flash(cfg))
      flash_attention_forward(out, saved, qkv, cfg, valid_len, ctx_);
    else
      cuda::attention_forward(out, saved, qkv, cfg, valid_len, attention_, ctx_);
  }
  // On the flash path the LayerNorm writes its output in bf16 only, into the projection's saved
  // state (the GEMM's operand, and its weight gradient's), and the projection's GEMM writes the
  // bf16 qkv into the attention's saved state, where the kernels read it: no fp32 LayerNorm
  // output and no fp32 qkv (on `gpu-small`, 8 + 24 bytes a token and d_model column a layer less
  // traffic, about 9.7 GB a step, and 403 MB a layer less memory, counted).
  int64_t attention_ln_floats(const nn::AttentionConfig& cfg) const override {
    if (flash(cfg)) return 0;
    return nn::Backend::attention_ln_floats(cfg);
  }
  int64_t attention_qkv_floats(const nn::AttentionConfig& cfg) const override {
    if (flash(cfg)) return 0;
    return nn::Backend::attention_qkv_floats(cfg);
  }
  void attention_front_forward(float* out, const nn::AttentionFrontState& s, const float* x,
                               const nn::AttentionFrontWeights& w, const nn::AttentionConfig& cfg,
                               const int* valid_len) override {
    if (!flash(cfg)) {
      nn::Backend::attention_front_forward(out, s, x, w, cfg, valid_len);
      return;
    }
    const nn::LinearShape shape = nn::attention_qkv_shape(cfg);
    uint16_t* ln16 = reinterpret_cast<uint16_t*>(s.qkv_saved);
    cuda::layernorm_forward(ln16, s.ln_mean, s.ln_rstd, x, w.ln_gain, w.ln_bias, shape.rows,
                            shape.in_dim, ctx_.stream);
    cuda::linear_forward_bf16(flash_attention_qkv16(s.saved, cfg), ln16, /*inp=*/nullptr, w.qkv_w,
                              w.qkv_b, shape, linear_, ctx_);
    flash_attention_forward_saved(out, s.saved, cfg, valid_len, ctx_);
  }
  // kOverwrite: the flash kernels store; the cuBLAS path adds into zeros.
  void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                          const float* saved, const nn::AttentionConfig& cfg, const int* valid_len,
                          nn::GradWrite dqkv_write) override {
    if (flash(cfg)) {
      flash_attention_backward(dqkv, dout, out, saved, cfg, valid_len, dqkv_write, flash_, ctx_);
      return;
    }
    if (dqkv_write == nn::GradWrite::kOverwrite)
      fill(dqkv, int64_t(cfg.batch) * cfg.seq_len * 3 * cfg.model_dim(), 0.f);
    cuda::attention_backward(dqkv, dout, qkv, saved, cfg, valid_len, attention_, ctx_);
  }
  void attention_decode(float* out, const float* q, const float* keys, const float* values,
                        const nn::AttentionDecodeConfig& cfg) override {
    cuda::attention_decode(out, q, keys, values, cfg, attention_decode_, ctx_.stream);
  }
  void tied_output_forward(float* logits, const float* h, const float* table,
                           const nn::LinearShape& shape, Precision precision) override {
    cuda::tied_output_forward(logits, h, table, shape, precision, linear_, ctx_);
  }
  void tied_output_backward(float* dh, float* dtable, const float* dlogits, const float* h,
                            const float* table, const nn::LinearShape& shape,
                            Precision precision) override {
    cuda::tied_output_backward(dh, dtable, dlogits, h, table, shape, precision, linear_, ctx_);
  }
  // The loss's three values (sum, count, first bad row) come back through a pinned buffer; the
  // host waits for them in wait_for_results(), after it has queued what follows (the backward).
  void cross_entropy_forward(nn::CrossEntropyResult* result, float* logsumexp, const float* logits,
                             const int* targets, int rows, int vocab) override {
    wait_for_results();  // the last loss first: one pending at a time
    if (rows == 0) {
      *result = {0.0, 0};
      return;
    }
    loss_.resize(3);
    cuda::cross_entropy_forward(loss_.data(), logsumexp, logits, targets, rows, vocab, ctx_.stream);
    loss_readback_.begin(3 * sizeof(double));
    loss_at_ = loss_readback_.add(loss_.data(), 3, ctx_.stream);
    loss_readback_.record(ctx_.stream);
    pending_loss_ = {result, targets, rows, vocab};
  }
  void wait_for_results() override {
    if (!pending_loss_.result) return;
    const PendingLoss p = pending_loss_;
    pending_loss_ = {};
    loss_readback_.wait();
    const double* values = loss_readback_.at<double>(loss_at_);
    const int bad_row = int(values[2]);
    if (bad_row < p.rows) {
      int target = 0;
      download(&target, p.targets + bad_row, sizeof target);
      nn::fail_bad_target(target, bad_row, p.vocab);
    }
    *p.result = {values[0], int64_t(values[1])};
  }
  void cross_entropy_backward(float* dlogits, const float* logits, const float* logsumexp,
                              const int* targets, int64_t count, float dloss, int rows,
                              int vocab) override {
    cuda::cross_entropy_backward(dlogits, logits, logsumexp, targets, count, dloss, rows, vocab,
                                 ctx_.stream);
  }

 private:
  bool flash(const nn::AttentionConfig& cfg) const {
    return options_.flash_attention && flash_attention_supports(cfg);
  }
  Context& ctx_;
  NnBackendOptions options_;
  ColumnSumScratch column_sums_;
  EmbeddingScratch embedding_;
  LinearScratch linear_;
  AttentionScratch attention_;
  FlashAttentionScratch flash_;
  AttentionDecodeScratch attention_decode_;
  DeviceVec<double> loss_;
  Readback loss_readback_;
  std::size_t loss_at_ = 0;
  struct PendingLoss {  // a cross_entropy_forward whose result is on its way
    nn::CrossEntropyResult* result = nullptr;
    const int* targets = nullptr;
    int rows = 0, vocab = 0;
  };
  PendingLoss pending_loss_;
};

}  // namespace

std::unique_ptr<nn::Backend> make_nn_backend(const NnBackendOptions& options) {
  return std::make_unique<CudaNnBackend>(options);
}

}  // namespace ecmoe::cuda
