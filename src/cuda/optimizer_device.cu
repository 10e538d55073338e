// OptimizerDevice on the GPU: DeviceVecs for the parameters and gradients, a DeviceAdamW made from
// the host optimizer at load(), on the context's stream.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "core/error.h"
#include "cuda/context.h"
#include "cuda/cuda_check.h"
#include "cuda/device_buffer.h"
#include "cuda/optimizer.h"
#include "cuda/optimizer_device.h"
#include "cuda/readback.h"

namespace ecmoe::cuda {

namespace {

class CudaOptimizerDevice final : public OptimizerDevice {
 public:
  CudaOptimizerDevice(const TensorTable& table, const AdamWConfig& config)
      : ctx_(context()), table_(table) {
    (void)config;  // AdamW's settings come with the host optimizer at load()
    const std::size_t n = std::size_t(table.total_floats());
    params_.resize(n);
    grads_.resize(n);
    all_[0] = {grads_.data(), int64_t(grads_.size())};
    // The parameters' bf16 copy: made once a bf16 GEMM asks for it (Context::params_bf16).
    ctx_.params_bf16 = {params_.data(), int64_t(n), nullptr, false};
    // Zeroed lazily where an op writes a range whole (the expert weights' gradients).
    ctx_.grads.attach(grads_.data(), int64_t(n));
  }
  ~CudaOptimizerDevice() override {
    if (ctx_.params_bf16.params == params_.data()) ctx_.params_bf16 = {};
    ctx_.grads.detach(grads_.data());
  }
  CudaOptimizerDevice(const CudaOptimizerDevice&) = delete;
  CudaOptimizerDevice& operator=(const CudaOptimizerDevice&) = delete;
  void load(const FlatBuffer& params, const AdamW& adam) override {
    ECMOE_CHECK(params.size() == table_.total_floats(), "cuda optimizer: a parameter buffer of ",
                params.size(), " floats for a table of ", table_.total_floats());
    ECMOE_CHECK(adam.m().size() == table_.total_floats(), "cuda optimizer: an AdamW of ",
                adam.m().size(), " floats for a table of ", table_.total_floats());
    params_.upload(std::span<const float>(params.data(), std::size_t(params.size())), ctx_.stream);
    ctx_.wrote(params_.data(), params_.bytes());  // the bf16 copy is stale until the next step
    adam_.emplace(adam, ctx_.stream);             // copies the moments and the step count
    ctx_.synchronize();
  }
  void store(FlatBuffer& params, AdamW& adam) override {
    require_loaded();
    ECMOE_CHECK(params.size() == table_.total_floats(), "cuda optimizer: wrong parameter buffer");
    ECMOE_CUDA_CHECK(cudaMemcpyAsync(params.data(), params_.data(), params_.bytes(),
                                     cudaMemcpyDeviceToHost, ctx_.stream));
    adam_->copy_to(adam, ctx_.stream);  // waits for the stream
  }
  void store_grads(FlatBuffer& grads) override {
    ECMOE_CHECK(grads.size() == table_.total_floats(), "cuda optimizer: wrong gradient buffer");
    if (scale_pending_) {  // the host sees them clipped, as the CPU's
      apply_clip_scale(all_grads(), norm_scratch_, ctx_.stream);
      scale_pending_ = false;
    }
    settle_grads();
    ECMOE_CUDA_CHECK(cudaMemcpyAsync(grads.data(), grads_.data(), grads_.bytes(),
                                     cudaMemcpyDeviceToHost, ctx_.stream));
    ctx_.synchronize();
  }
  float* params() override { return params_.data(); }
  float* grads() override { return grads_.data(); }
  void zero_grads() override {
    if (ctx_.grads.attached(grads_.data()))
      ctx_.grads.zero(ctx_.stream);
    else
      grads_.zero(ctx_.stream);
    scale_pending_ = false;
  }
  // The clipping factor stays on the device and AdamW applies it (DeviceAdamW::step): the same
  // bits as scaling the gradients first, one pass over them fewer. The norm comes back through a
  // pinned buffer, waited for by finish_clip_grad_norm.
  void start_clip_grad_norm(float max_norm) override {
    settle_grads();
    queue_grad_norm(all_grads(), max_norm, norm_scratch_, ctx_.stream);
    norm_readback_.begin(sizeof(float));
    norm_at_ = norm_readback_.add(norm_on_device(norm_scratch_), 1, ctx_.stream);
    norm_readback_.record(ctx_.stream);
    scale_pending_ = max_norm > 0.f;
    norm_pending_ = true;
  }
  float finish_clip_grad_norm() override {
    ECMOE_CHECK(norm_pending_, "cuda optimizer: finish_clip_grad_norm without a start");
    norm_pending_ = false;
    norm_readback_.wait();
    return *norm_readback_.at<float>(norm_at_);
  }
  double grad_sum_of_squares() override {
    settle_grads();
    return cuda::grad_sum_of_squares(grads_.data(), int64_t(grads_.size()), norm_scratch_,
                                     ctx_.stream);
  }
  void scale_grads(float scale) override {
    settle_grads();
    cuda::scale_grads(grads_.data(), int64_t(grads_.size()), scale, ctx_.stream);
  }
  void adamw_step(float lr) override {
    require_loaded();
    settle_grads();
    const float* clip = scale_pending_ ? clip_scale_on_device(norm_scratch_) : nullptr;
    // Once asked for (wanted stays set), the bf16 copy is written whole by every step (valid
    // again after a write into the parameters made it stale).
    ParamsBf16& copy = ctx_.params_bf16;
    const bool keep_copy = copy.params == params_.data() && copy.wanted;
    if (keep_copy) params16_.resize(params_.size());
    adam_->step(params_.data(), grads_.data(), lr, ctx_.stream, clip,
                keep_copy ? params16_.data() : nullptr);
    if (keep_copy) copy.copy = params16_.data();
    scale_pending_ = false;
  }
  void wait() override { ctx_.synchronize(); }

 private:
  void require_loaded() const {
    ECMOE_CHECK(adam_.has_value(), "cuda optimizer: load() the parameters and AdamW first");
  }
  std::span<const DeviceGrads> all_grads() const { return all_; }
  // Before the gradients are read whole: the ranges still logically zero are zeroed.
  void settle_grads() {
    if (ctx_.grads.attached(grads_.data())) ctx_.grads.settle(ctx_.stream);
  }
  Context& ctx_;
  const TensorTable& table_;
  DeviceVec<float> params_, grads_;
  DeviceVec<uint16_t> params16_;  // Context::params_bf16's copy, once asked for
  std::optional<DeviceAdamW> adam_;
  GradNormScratch norm_scratch_;
  Readback norm_readback_;
  std::size_t norm_at_ = 0;
  bool norm_pending_ = false;
  DeviceGrads all_[1];  // grads_ as clip_grad_norm's one buffer (never reallocated)
  // clip_grad_norm's factor is still to be applied (by adamw_step, or store_grads).
  bool scale_pending_ = false;
};

}  // namespace

std::unique_ptr<OptimizerDevice> make_optimizer_device(const TensorTable& table,
                                                       const AdamWConfig& config) {
  return std::make_unique<CudaOptimizerDevice>(table, config);
}

}  // namespace ecmoe::cuda
