#include "cli/train_device.h"

#include <cstdlib>

#include "core/error.h"

#ifdef ECMOE_HAVE_CUDA
#include <memory>

#include "cuda/context.h"
#include "cuda/flash_attention.h"
#include "cuda/moe_layer.h"
#include "cuda/nn_backend.h"
#include "cuda/optimizer_device.h"
#endif

namespace ecmoe::cli {

std::string cuda_attention_choice() {
  const char* value = std::getenv("ECMOE_CUDA_ATTENTION");
  const std::string choice = value && *value ? value : "flash";
  ECMOE_CHECK(choice == "flash" || choice == "cublas", "ECMOE_CUDA_ATTENTION=", choice,
              ": expected flash or cublas");
  return choice;
}

std::string attention_path(const std::string& device, const nn::AttentionConfig& cfg) {
  if (device != "cuda") return "cpu";
#ifdef ECMOE_HAVE_CUDA
  if (cuda_attention_choice() == "flash" && cuda::flash_attention_supports(cfg)) return "flash";
#else
  (void)cfg;
#endif
  return "cublas";
}

const TrainDevice* train_device(const std::string& name) {
  if (name == "cpu") return nullptr;
  ECMOE_CHECK(name == "cuda", "unknown device '", name, "' (known: ", kDeviceNames, ")");
#ifndef ECMOE_HAVE_CUDA
  fail(
      "--device cuda: this ecmoe was built without the CUDA backend (configure with "
      "-DECMOE_CUDA=ON; docs/cuda.md)");
#else
  // Made on first use and kept for the process: the backend holds the device's scratch buffers.
  static const std::unique_ptr<nn::Backend> dense =
      cuda::make_nn_backend({.flash_attention = cuda_attention_choice() == "flash"});
  static const TrainDevice device{.name = "cuda",
                                  .nn = dense.get(),
                                  .moe = [] { return cuda::make_moe_backend(); },
                                  .optimizer =
                                      [](const TensorTable& table, const AdamWConfig& config) {
                                        return cuda::make_optimizer_device(table, config);
                                      },
                                  .free_memory = [] { return cuda::free_memory_bytes(); }};
  return &device;
#endif
}

}  // namespace ecmoe::cli
