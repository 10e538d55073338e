// A training run's parameters, gradients and AdamW state kept where the model computes (a GPU),
// mirrored from and to the host buffers that checkpoints read and write. The trainer's device
// path (train/train_device.h) drives it: load once, then per step zero, (the model writes the
// gradients), clip, step; store before a checkpoint. cuda/optimizer_device.h is the GPU's;
// make_host_optimizer_device is the same path on host memory, the reference the tests compare
// the plain trainer with.
#pragma once
#include <memory>
#include <span>

#include "core/tensor_table.h"
#include "optim/adamw.h"

namespace ecmoe {

class OptimizerDevice {
 public:
  virtual ~OptimizerDevice() = default;
  // Host -> device: the parameters, AdamW's moments and step count (a new run or a resume).
  virtual void load(const FlatBuffer& params, const AdamW& adam) = 0;
  // Device -> host: the same (for a checkpoint), and the gradients (for an error report).
  virtual void store(FlatBuffer& params, AdamW& adam) = 0;
  virtual void store_grads(FlatBuffer& grads) = 0;
  // The device's copies, at the table's offsets (the model's forward_on_backend takes them).
  virtual float* params() = 0;
  virtual float* grads() = 0;
  virtual void zero_grads() = 0;
  // optim/grad_clip.h's clip_grad_norm (one process) and AdamW::step, on the device's buffers.
  // A device may leave the clipping factor to the next adamw_step (the GPU's multiplies each
  // gradient as it reads it: the same bits, one pass fewer); store_grads gives them clipped.
  // In two halves: start queues the norm, finish returns it (a device waits for it there), so
  // that a training step waits for its loss and its norm at once.
  virtual void start_clip_grad_norm(float max_norm) = 0;
  virtual float finish_clip_grad_norm() = 0;
  float clip_grad_norm(float max_norm) {
    start_clip_grad_norm(max_norm);
    return finish_clip_grad_norm();
  }
  // The device's part of a clipping over its gradients and other buffers as one gradient
  // (clip_grad_norm below): the gradients' sum of squares in optim/grad_clip.h's order (the bits
  // of grad_sum_of_squares), and the gradients scaled by a factor (scale_grads).
  virtual double grad_sum_of_squares() = 0;
  virtual void scale_grads(float scale) = 0;
  virtual void adamw_step(float lr) = 0;
  // Returns once the work queued on the device is done (for timing a step).
  virtual void wait() = 0;
};

// optim/grad_clip.h's clip_grad_norm over the device's gradients and the host buffers `host` as
// one gradient, the device's first (e.g. a fine-tuned encoder's on the device and its task head's
// on the host): the same norm, and the same scaled gradients, as that function over host copies
// of them all in that order. Returns the norm before clipping.
float clip_grad_norm(OptimizerDevice& device, std::span<FlatBuffer* const> host, float max_norm);

// The device path on host memory: the same calls as the plain trainer makes, so a run through it
// is bitwise the plain run.
std::unique_ptr<OptimizerDevice> make_host_optimizer_device(const TensorTable& table,
                                                            const AdamWConfig& config);

}  // namespace ecmoe
