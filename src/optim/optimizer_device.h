// A training run's parameters, gradients and AdamW state kept where the model computes (a GPU),
// mirrored from and to the host buffers that checkpoints read and write. The trainer's device
// path (train/train_device.h) drives it: load once, then per step zero, (the model writes the
// gradients), clip, step; store before a checkpoint. cuda/optimizer_device.h is the GPU's;
// make_host_optimizer_device is the same path on host memory, the reference the tests compare
// the plain trainer with.
#pragma once
#include <memory>

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
  virtual float clip_grad_norm(float max_norm) = 0;
  virtual void adamw_step(float lr) = 0;
  // Returns once the work queued on the device is done (for timing a step).
  virtual void wait() = 0;
};

// The device path on host memory: the same calls as the plain trainer makes, so a run through it
// is bitwise the plain run.
std::unique_ptr<OptimizerDevice> make_host_optimizer_device(const TensorTable& table,
                                                            const AdamWConfig& config);

}  // namespace ecmoe
