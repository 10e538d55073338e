// Every stream id the engine passes to Rng(seed, stream) (core/rng.h), in one place, so that no
// two uses of one seed draw the same numbers by accident and a changed id is seen in review.
// All are fixed numbers or fixed functions of names (FNV-1a, never std::hash), so a seed gives
// the same model, masks and noise under every compiler and standard library.
#pragma once
#include <cstdint>
#include <string_view>

#include "core/fnv1a.h"

namespace ecmoe::streams {

// --- Initialisation (seed: the model's init seed) ---
// Transformer::init_params: tensor i of the model's parameter table draws from stream i.
constexpr uint64_t model_tensor(uint64_t table_index) { return table_index; }
// init_moe_params of a layer under `prefix`: router.weight, experts.w1 and experts.w2 draw from
// moe_tensor(prefix) + 1, + 2 and + 3.
constexpr uint64_t moe_tensor(std::string_view prefix) { return fnv1a64(prefix); }

// --- Router jitter (moe) ---
// One MoE forward's multiplicative noise: Rng(MoeInput::seed, kRouterJitter).
constexpr uint64_t kRouterJitter = 0x6a177e5ULL;
// MoeInput::seed of layer l is mix64(step_seed ^ mix64(kLayerJitter + l)) ("layer" in ASCII), so
// each layer's noise differs (model/transformer.cpp).
constexpr uint64_t kLayerJitter = 0x6c61796572ULL;

// --- Pre-training (seed: seeds.mask) ---
// Masks of training batch i: stream i, below 2^62.
// Masks of validation batch i: kValidationMasks + i.
constexpr uint64_t kValidationMasks = uint64_t(1) << 62;
// Router jitter of step s: Rng(seeds.mask, kTrainJitter).bits(s), the step's jitter seed.
constexpr uint64_t kTrainJitter = uint64_t(3) << 62;

// --- Fine-tuning (seed: the fine-tune seed) ---
constexpr uint64_t kFinetuneHeadInit = 1;  // classifier head: seed mix64(seed ^ this)
constexpr uint64_t kFinetuneJitter = 2;    // router jitter of step s: .bits(s)
// Epoch t's order: kFinetuneOrder + 2t; its batch cuts: kFinetuneOrder + 2t + 1.
constexpr uint64_t kFinetuneOrder = uint64_t(1) << 40;

// --- Generation (seed: --seed) ---
// Sampling of token i: Rng(seed, kGenerate) ("gen" in ASCII).
constexpr uint64_t kGenerate = 0x67656eULL;

}  // namespace ecmoe::streams
