#include "train/train_device.h"

#include <cstddef>

#include "core/error.h"
#include "train/memory_estimate.h"

namespace ecmoe {

TrainDevice host_train_device() {
  return {.name = "host",
          .nn = &nn::cpu_backend(),
          .moe = {},
          .optimizer =
              [](const TensorTable& table, const AdamWConfig& config) {
                return make_host_optimizer_device(table, config);
              },
          .free_memory = {}};
}

std::optional<DeviceMemory> device_memory(const TrainDevice* device) {
  if (!device || !device->free_memory) return std::nullopt;
  return DeviceMemory{device->free_memory(), device->name + " memory"};
}

void check_training_memory(const TrainConfig& config, const TrainDevice* device,
                           const std::vector<std::pair<std::string, std::string>>& key_names) {
  const std::optional<DeviceMemory> memory = device_memory(device);
  check_memory(config, /*training=*/true, key_names, memory ? &*memory : nullptr);
}

void check_evaluation_memory(const TrainConfig& config, int batch_size_option,
                             const TrainDevice* device) {
  const std::optional<DeviceMemory> memory = device_memory(device);
  check_eval_memory(config, batch_size_option, memory ? &*memory : nullptr);
}

void use_device(Transformer& model, const TrainDevice& device) {
  model.set_nn_backend(*device.nn);
  model.set_moe_backends(device.moe);
}

nn::Buffer<float> place_on_device(Transformer& model, const TrainDevice& device,
                                  const FlatBuffer& params) {
  ECMOE_CHECK(params.size() == model.table().total_floats(),
              "place_on_device: the parameters do not belong to this model");
  use_device(model, device);
  nn::Buffer<float> on_device;
  on_device.resize(*device.nn, params.size());
  device.nn->upload(on_device.data(), params.data(), std::size_t(params.size()) * sizeof(float));
  return on_device;
}

}  // namespace ecmoe
