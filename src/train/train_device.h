// Where a training run computes when it is not the host CPU: the model's dense ops (nn::Backend),
// its MoE layers (a MoeBackend per layer) and the parameters, gradients and optimizer state
// (OptimizerDevice). The CLI assembles the GPU's from src/cuda (`--device cuda`); train() runs
// the same steps on it, with checkpoints, metrics and resume as on the host. One process only.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor_table.h"
#include "model/transformer.h"
#include "moe/moe_backend.h"
#include "nn/backend.h"
#include "nn/buffer.h"
#include "optim/adamw.h"
#include "optim/optimizer_device.h"
#include "train/memory_estimate.h"
#include "train/train_config.h"

namespace ecmoe {

struct TrainDevice {
  std::string name;                                  // "cuda"
  nn::Backend* nn = nullptr;                         // must outlive the run
  std::function<std::unique_ptr<MoeBackend>()> moe;  // empty: the MoE layers on the host
  std::function<std::unique_ptr<OptimizerDevice>(const TensorTable&, const AdamWConfig&)> optimizer;
  // Bytes free on the device now; the run's memory estimate is checked against it before
  // training starts (empty: the host's memory is checked, as without a device).
  std::function<double()> free_memory;
};

// The device path on the host: nn::cpu_backend(), host MoE layers, the host optimizer device.
// Bitwise the plain trainer (tests/train/test_train_device.cpp), so the path is tested here.
TrainDevice host_train_device();

// What a run on `device` is checked against: its free memory now, named "<name> memory", where it
// reports it; else nothing (the host's memory; device nullptr: the host).
std::optional<DeviceMemory> device_memory(const TrainDevice* device);

// memory_estimate.h's check_memory for training `config` where it runs: against the device's
// free memory when it reports it (the activations live there), else the host's (device nullptr:
// the host).
void check_training_memory(const TrainConfig& config, const TrainDevice* device,
                           const std::vector<std::pair<std::string, std::string>>& key_names = {});
// The same for evaluating a run's checkpoint: memory_estimate.h's check_eval_memory where it runs.
void check_evaluation_memory(const TrainConfig& config, int batch_size_option,
                             const TrainDevice* device);

// The model's dense ops and MoE layers on `device` (Transformer::set_nn_backend,
// set_moe_backends), until they are set again.
void use_device(Transformer& model, const TrainDevice& device);

// For evaluation on a device: use_device, and a copy of `params` in the device's memory (what
// Transformer::forward_on_backend takes).
nn::Buffer<float> place_on_device(Transformer& model, const TrainDevice& device,
                                  const FlatBuffer& params);

}  // namespace ecmoe
