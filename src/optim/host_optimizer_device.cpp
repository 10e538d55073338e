// OptimizerDevice on host memory: FlatBuffers, optim/grad_clip.h and AdamW themselves.
#include <algorithm>
#include <memory>

#include "core/error.h"
#include "optim/grad_clip.h"
#include "optim/optimizer_device.h"

namespace ecmoe {

namespace {

void copy_buffer(FlatBuffer& to, const FlatBuffer& from) {
  ECMOE_CHECK(to.size() == from.size(), "optimizer device: buffers of ", from.size(), " and ",
              to.size(), " floats");
  std::copy(from.data(), from.data() + from.size(), to.data());
}

class HostOptimizerDevice final : public OptimizerDevice {
 public:
  HostOptimizerDevice(const TensorTable& table, const AdamWConfig& config)
      : params_(table), grads_(table), adam_(table, config) {}
  void load(const FlatBuffer& params, const AdamW& adam) override {
    copy_buffer(params_, params);
    copy_buffer(adam_.m(), adam.m());
    copy_buffer(adam_.v(), adam.v());
    adam_.set_step_count(adam.step_count());
  }
  void store(FlatBuffer& params, AdamW& adam) override {
    copy_buffer(params, params_);
    copy_buffer(adam.m(), adam_.m());
    copy_buffer(adam.v(), adam_.v());
    adam.set_step_count(adam_.step_count());
  }
  void store_grads(FlatBuffer& grads) override { copy_buffer(grads, grads_); }
  float* params() override { return params_.data(); }
  float* grads() override { return grads_.data(); }
  void zero_grads() override { grads_.zero(); }
  void start_clip_grad_norm(float max_norm) override {
    norm_ = ecmoe::clip_grad_norm(grads_, max_norm);
  }
  float finish_clip_grad_norm() override { return norm_; }
  double grad_sum_of_squares() override { return ecmoe::grad_sum_of_squares(grads_); }
  void scale_grads(float scale) override { ecmoe::scale_grads(grads_, scale); }
  void adamw_step(float lr) override { adam_.step(params_, grads_, lr); }
  void wait() override {}

 private:
  FlatBuffer params_, grads_;
  float norm_ = 0.f;  // start_clip_grad_norm's
  AdamW adam_;
};

}  // namespace

std::unique_ptr<OptimizerDevice> make_host_optimizer_device(const TensorTable& table,
                                                            const AdamWConfig& config) {
  return std::make_unique<HostOptimizerDevice>(table, config);
}

}  // namespace ecmoe
