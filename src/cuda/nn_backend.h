// The dense ops of the model on the GPU: nn/backend.h implemented by the CUDA kernels of
// cuda/nn_ops.h, loss.h, linear.h, attention.h or flash_attention.h, and attention_decode.h, on
// the context's one stream. Memory is cudaMalloc'd; copies are ordered on the stream (a download
// waits for it). With Transformer::set_nn_backend and set_moe_backends(cuda::make_moe_backend),
// the whole model runs on the device (tests/cuda/test_cuda_model.cpp checks it against the CPU
// model), and so does KvDecoder's step (tests/cuda/test_cuda_decode.cpp).
#pragma once
#include <memory>

#include "nn/backend.h"

namespace ecmoe::cuda {

struct NnBackendOptions {
  // Attention in bf16 mode through the fused kernels of cuda/flash_attention.h (when they take
  // the config: head_dim a multiple of 16 up to 128), saving the rows' logsumexp instead of the
  // probabilities; false: cuda/attention.h's cuBLAS path always. fp32 mode always takes the
  // cuBLAS path (the exactness mode).
  bool flash_attention = true;
};

// Throws ecmoe::Error when no CUDA device is usable.
std::unique_ptr<nn::Backend> make_nn_backend(const NnBackendOptions& options = {});

}  // namespace ecmoe::cuda
