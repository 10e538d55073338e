// The FLOP count of `ecmoe bench train`, worked out by hand for the small config.
#include <gtest/gtest.h>

#include "train/flops.h"

using namespace ecmoe;

namespace {
ModelConfig small_model(RouterKind router) {
  ModelConfig m;  // d 256, 4 layers, f 1024, T 128, 8 experts, MoE in layers 1 and 3
  m.vocab_size = 8000;
  m.moe.router = router;
  m.moe.capacity_factor_train = 2.f;
  return m;
}
}  // namespace

TEST(Flops, ActivatedParametersOfTheSmallConfig) {
  const double attention = 4 * (4 * 256 + 256 * 768 + 768 + 256 * 256 + 256);  // + LayerNorms
  const double ffn = 2 * 256 * 1024;                                           // one expert
  const double output = 8000 * 256 + 2 * 256;  // tied projection + final LayerNorm
  const double router = 256 * 8;
  // Expert choice at c = 2: two dense layers, two MoE layers of 2 experts per token on average.
  EXPECT_EQ(activated_params(small_model(RouterKind::kExpertChoice)),
            attention + 2 * ffn + 2 * (router + 2 * ffn) + output);
  EXPECT_EQ(activated_params(small_model(RouterKind::kExpertChoice)), 6255104);
  EXPECT_EQ(activated_params(small_model(RouterKind::kTop2)),
            attention + 2 * ffn + 2 * (router + 2 * ffn) + output);
  EXPECT_EQ(activated_params(small_model(RouterKind::kTop1)),
            attention + 2 * ffn + 2 * (router + ffn) + output);
  EXPECT_EQ(activated_params(small_model(RouterKind::kHash)), attention + 4 * ffn + output);
}

TEST(Flops, PerTokenCountsTheOutputLayerForTargetsOnly) {
  const ModelConfig m = small_model(RouterKind::kExpertChoice);
  const double output = 8000.0 * 256;
  const double attention_scores = 12.0 * 4 * 128 * 256;
  EXPECT_DOUBLE_EQ(train_flops_per_token(m, 1.0), 6 * 6255104.0 + attention_scores);
  EXPECT_DOUBLE_EQ(train_flops_per_token(m, 0.15),
                   6 * (6255104.0 - output + 0.15 * output) + attention_scores);
}
