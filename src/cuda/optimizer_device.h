// optim/optimizer_device.h on the GPU: parameters, gradients and AdamW's moments in device memory,
// the step by cuda/optimizer.h's DeviceAdamW (the CPU's own update function: the same bits) and
// the clipping by its clip_grad_norm (the CPU's order of the sum: the same norm). With
// cuda/nn_backend.h and cuda/moe_layer.h it makes `train --device cuda` (train/train_device.h).
#pragma once
#include <memory>

#include "core/tensor_table.h"
#include "optim/adamw.h"
#include "optim/optimizer_device.h"

namespace ecmoe::cuda {

// Throws ecmoe::Error when no CUDA device is usable.
std::unique_ptr<OptimizerDevice> make_optimizer_device(const TensorTable& table,
                                                       const AdamWConfig& config);

}  // namespace ecmoe::cuda
