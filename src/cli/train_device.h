// `--device cpu|cuda` of the training commands: the TrainDevice (train/train_device.h) a name
// stands for. cuda needs an ecmoe built with -DECMOE_CUDA=ON (docs/cuda.md).
#pragma once
#include <string>

#include "nn/attention.h"
#include "train/train_device.h"

namespace ecmoe::cli {

inline constexpr const char* kDeviceNames = "cpu, cuda";

// nullptr for "cpu" (the plain host trainer); the process's one CUDA device for "cuda". Throws a
// one-line ecmoe::Error for an unknown name or a build without the CUDA backend.
const TrainDevice* train_device(const std::string& name);

// The environment's ECMOE_CUDA_ATTENTION: "flash" (unset or empty: the default) or "cublas", the
// CUDA backend's attention in bf16 mode (docs/cuda.md): the fused kernels, or the cuBLAS path
// that keeps the probabilities. Throws a one-line ecmoe::Error for any other value.
std::string cuda_attention_choice();
// Which attention the model's layers of cfg run on `device`: "cpu", "flash" or "cublas".
std::string attention_path(const std::string& device, const nn::AttentionConfig& cfg);

}  // namespace ecmoe::cli
