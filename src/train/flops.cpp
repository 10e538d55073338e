#include "train/flops.h"

namespace ecmoe {

namespace {
double experts_per_token(const MoeConfig& moe) {
  switch (moe.router) {
    case RouterKind::kExpertChoice:
    case RouterKind::kExpertChoiceCapped:
    case RouterKind::kExpertThreshold:  // c on average (the cutoffs track expert choice's k)
      return moe.capacity_factor_train;
    case RouterKind::kTop1:
    case RouterKind::kTop2:
      return moe.choices_per_token();
    case RouterKind::kDense:
    case RouterKind::kHash:
      return 1;
  }
  return 1;
}
}  // namespace

double activated_params(const ModelConfig& m) {
  const double d = m.d_model, f = m.d_ff;
  double n = 0;
  for (int l = 0; l < m.n_layers; ++l) {
    n += 4 * d;                          // ln1, ln2 gains and biases
    n += d * 3 * d + 3 * d + d * d + d;  // qkv and output projections with biases
    const MoeConfig ffn = m.ffn_config(l);
    if (router_has_weights(ffn.router)) n += d * ffn.n_experts;
    n += experts_per_token(ffn) * 2 * d * f;
  }
  n += 2 * d;                     // final LayerNorm
  n += double(m.vocab_size) * d;  // tied output projection
  return n;
}

double train_flops_per_token(const ModelConfig& m, double targets_per_token) {
  const double output = double(m.vocab_size) * m.d_model;
  return 6 * (activated_params(m) - output + targets_per_token * output) +
         12.0 * m.n_layers * m.seq_len * m.d_model;
}

}  // namespace ecmoe
