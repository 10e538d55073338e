// Host: FlatBuffers, AdamW, clip_grad_norm. Device: the OptimizerDevice, and clip_grad_norm over
// its gradients and the head's (optim/optimizer_device.h).
#include "finetune/encoder_training.h"

#include <cstddef>

#include "core/error.h"
#include "optim/grad_clip.h"

namespace ecmoe::finetune {

namespace {

nn::Backend& backend_for(Transformer& model, const TrainDevice* device) {
  if (device) {
    ECMOE_CHECK(device->nn && device->optimizer, "fine-tuning device ", device->name,
                " is incomplete");
    use_device(model, *device);
  }
  return model.nn_backend();
}

}  // namespace

EncoderTraining::EncoderTraining(Transformer& model, const FlatBuffer& params,
                                 const AdamWConfig& config, const TrainDevice* device)
    : backend_(backend_for(model, device)), floats_(model.table().total_floats()) {
  ECMOE_CHECK(params.size() == floats_, "fine-tuning: a parameter buffer of ", params.size(),
              " floats for a model of ", floats_);
  if (device) {
    device_ = device->optimizer(model.table(), config);
    device_->load(params, AdamW(model.table(), config));
  } else {
    params_.emplace(params);
    grads_.emplace(model.table());
    adam_.emplace(model.table(), config);
  }
}

float* EncoderTraining::params() { return device_ ? device_->params() : params_->data(); }
float* EncoderTraining::grads() { return device_ ? device_->grads() : grads_->data(); }

void EncoderTraining::zero_grads() {
  if (device_)
    device_->zero_grads();
  else
    grads_->zero();
}

float EncoderTraining::clip_grad_norm(FlatBuffer& head, float max_norm) {
  if (device_) {
    FlatBuffer* const host[] = {&head};
    return ecmoe::clip_grad_norm(*device_, host, max_norm);
  }
  FlatBuffer* const both[] = {&*grads_, &head};
  return ecmoe::clip_grad_norm(both, max_norm);
}

void EncoderTraining::adamw_step(float lr) {
  if (device_)
    device_->adamw_step(lr);
  else
    adam_->step(*params_, *grads_, lr);
}

void EncoderTraining::copy_params_to(FlatBuffer& out) {
  ECMOE_CHECK(out.size() == floats_, "fine-tuning: wrong parameter buffer");
  backend_.download(out.data(), params(), std::size_t(floats_) * sizeof(float));
}

void EncoderTraining::set_params(const FlatBuffer& params) {
  ECMOE_CHECK(params.size() == floats_, "fine-tuning: wrong parameter buffer");
  backend_.upload(this->params(), params.data(), std::size_t(floats_) * sizeof(float));
}

}  // namespace ecmoe::finetune
