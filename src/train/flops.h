// Model FLOPs of training, for utilisation figures (`ecmoe bench train`). The usual estimate
// (Kaplan et al.; PaLM's MFU): 6 FLOPs per activated parameter per token (2 forward, 4 backward)
// plus attention's score and value products, 12·L·T·d per token (forward 2·2·T·d per layer, ×3
// with backward). Causal masking is not subtracted, as in PaLM's formula. One refinement: the
// output projection runs only on positions that have a target (model/lm_head.h), so it counts
// for those only; counting it for every position would credit a masked-LM run with ~30% of
// FLOPs it never does.
#pragma once
#include "model/model_config.h"

namespace ecmoe {

// Parameters one token is multiplied by: attention and LayerNorms of every layer; a dense FFN's
// two matrices; a MoE layer's router plus its expert matrices times the experts a token gets on
// average (expert choice: the training capacity factor c, since e·k = c·n slots; token choice:
// its k choices, dropped ones included; hash: 1); the final LayerNorm; and the tied output
// projection V·d. The token and position embedding lookups multiply nothing and are left out.
double activated_params(const ModelConfig& model);

// 6·(activated_params − V·d + targets_per_token·V·d) + 12·n_layers·seq_len·d_model, where
// targets_per_token is the share of positions with a loss (masked LM: mask_prob; decoder: 1).
double train_flops_per_token(const ModelConfig& model, double targets_per_token);

}  // namespace ecmoe
