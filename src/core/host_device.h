// ECMOE_HOST_DEVICE marks a function that nvcc compiles for the GPU as well as the CPU (the CUDA
// backend, docs/cuda.md), so that both run one implementation of the same arithmetic: the RNG's
// draws (core/rng.h), AdamW's update (optim/adamw_update.h). Elsewhere it is empty.
#pragma once

#if defined(__CUDACC__)
#define ECMOE_HOST_DEVICE __host__ __device__
#else
#define ECMOE_HOST_DEVICE
#endif
