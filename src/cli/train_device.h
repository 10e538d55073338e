// `--device cpu|cuda` of the training commands: the TrainDevice (train/train_device.h) a name
// stands for. cuda needs an ecmoe built with -DECMOE_CUDA=ON (docs/cuda.md).
#pragma once
#include <string>

#include "train/train_device.h"

namespace ecmoe::cli {

inline constexpr const char* kDeviceNames = "cpu, cuda";

// nullptr for "cpu" (the plain host trainer); the process's one CUDA device for "cuda". Throws a
// one-line ecmoe::Error for an unknown name or a build without the CUDA backend.
const TrainDevice* train_device(const std::string& name);

}  // namespace ecmoe::cli
