// The MoE layer on the GPU: the CUDA backend behind MoeLayer (moe/moe_backend.h). Router logits
// (cuBLAS, fp32) and softmax, routing, the experts (cuda/experts.h) and the whole backward run on
// the device, on the context's one stream. Expert choice routes on the GPU
// (cuda/route_expert_choice.h); every other router runs the CPU's own router on the scores
// copied to the host and sends the plan back (the same plan by construction; its cost is in
// `bench layer --device cuda`'s "routing" phase). The auxiliary losses, when weighted or when
// statistics are collected, are computed on the host from copied logits and scores.
#pragma once
#include <memory>

#include "moe/moe_backend.h"

namespace ecmoe::cuda {

// A backend for MoeLayer::set_backend; throws ecmoe::Error when no CUDA device is usable.
std::unique_ptr<MoeBackend> make_moe_backend();

}  // namespace ecmoe::cuda
