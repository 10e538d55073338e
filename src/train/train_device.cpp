#include "train/train_device.h"

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

}  // namespace ecmoe
