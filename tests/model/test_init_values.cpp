// Initial parameter values pinned for a given seed: a changed stream id (core/rng_streams.h), a
// changed draw or a name hashed by an implementation-defined function (std::hash) would give
// another model from the same seed, and these numbers change with it. The tolerance only allows
// for the last bits of libm's log/cos (Box-Muller); a changed stream changes the values entirely.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "core/fnv1a.h"
#include "core/rng.h"
#include "core/rng_streams.h"
#include "model_test_util.h"
#include "moe/moe_layer.h"

using namespace ecmoe;
using namespace ecmoe::testing;

namespace {

constexpr uint64_t kSeed = 1234;
constexpr float kTol = 1e-6f;

struct Pinned {
  const char* tensor;
  int64_t index;
  float value;
};

void expect_pinned(const FlatBuffer& params, const Pinned& p) {
  const float got = params.get(p.tensor)[p.index];
  EXPECT_NEAR(got, p.value, kTol) << p.tensor << "[" << p.index << "]";
}

}  // namespace

TEST(InitValues, StreamIdsOfNamesAreFnv1a) {
  // Published FNV-1a 64 vectors, then the id of a layer's MoE tensors.
  static_assert(fnv1a64("") == 0xcbf29ce484222325ULL);
  static_assert(fnv1a64("a") == 0xaf63dc4c8601ec8cULL);
  static_assert(streams::moe_tensor("layers.1.ffn.") == fnv1a64("layers.1.ffn."));
  EXPECT_EQ(streams::moe_tensor("layers.1.ffn."), 0xb446b64a3184f770ULL);
}

TEST(InitValues, TinyModelIsPinned) {
  const Transformer model(tiny_config(ModelKind::kDecoder, RouterKind::kExpertChoice));
  FlatBuffer params(model.table());
  model.init_params(params, kSeed);
  const Pinned pinned[] = {
      {"embed.tokens", 0, -0.139692128f},
      {"embed.tokens", 1, -0.131718412f},
      {"embed.positions", 7, -0.371707201f},
      {"layers.0.attn.qkv.weight", 3, -0.267117649f},
      {"layers.1.ffn.router.weight", 0, -0.265346915f},
      {"layers.1.ffn.experts.w1", 5, -0.114332095f},
      {"layers.2.attn.out.weight", 1, -0.00905523729f},
  };
  for (const Pinned& p : pinned) expect_pinned(params, p);
}

TEST(InitValues, MoeLayerInitIsPinned) {
  const MoeConfig cfg = tiny_config(ModelKind::kDecoder, RouterKind::kExpertChoice).ffn_config(1);
  const std::string prefix = "layers.1.ffn.";
  TensorTable table;
  declare_moe_params(table, prefix, cfg);
  FlatBuffer params(table);
  init_moe_params(params, prefix, cfg, kSeed);
  const Pinned pinned[] = {
      {"layers.1.ffn.router.weight", 0, -0.00616098056f},
      {"layers.1.ffn.experts.w1", 0, 0.230060086f},
      {"layers.1.ffn.experts.w1", 9, -0.141905919f},
      {"layers.1.ffn.experts.w2", 0, -0.104436643f},
  };
  for (const Pinned& p : pinned) expect_pinned(params, p);
  // The documented streams: router, w1, w2 from moe_tensor(prefix) + 1, 2, 3.
  const uint64_t base = streams::moe_tensor(prefix);
  EXPECT_EQ(params.get(prefix + "router.weight")[0], 0.02f * Rng(kSeed, base + 1).normal(0));
  EXPECT_EQ(params.get(prefix + "experts.w2")[0],
            (1.f / std::sqrt(32.f)) * Rng(kSeed, base + 3).normal(0));
}
