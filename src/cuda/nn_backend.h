// The dense ops of the model on the GPU: nn/backend.h implemented by the CUDA kernels of
// cuda/nn_ops.h, loss.h, linear.h, attention.h and attention_decode.h, on the context's one
// stream. Memory is cudaMalloc'd; copies are ordered on the stream (a download waits for it). With
// Transformer::set_nn_backend and set_moe_backends(cuda::make_moe_backend), the whole model runs
// on the device (tests/cuda/test_cuda_model.cpp checks it against the CPU model), and so does
// KvDecoder's step (tests/cuda/test_cuda_decode.cpp).
#pragma once
#include <memory>

#include "nn/backend.h"

namespace ecmoe::cuda {

// Throws ecmoe::Error when no CUDA device is usable.
std::unique_ptr<nn::Backend> make_nn_backend();

}  // namespace ecmoe::cuda
