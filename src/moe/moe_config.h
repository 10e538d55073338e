// Configuration of one MoE layer: sizes, router kind and the router's options.
#pragma once
#include <string>

#include "core/precision.h"

namespace ecmoe {

enum class RouterKind {
  kExpertChoice,        // each expert takes its top-k tokens (Zhou et al. 2022)
  kExpertChoiceCapped,  // expert choice with at most b experts per token (entropic LP, Dykstra)
  kTop1,                // Switch: each token picks its best expert, capacity-limited
  kTop2,                // GShard: each token picks its two best experts, capacity-limited
  kDense,               // an ordinary FFN (one expert, every token, gate 1)
  kHash,                // expert = token id mod e, gate 1 (Roller et al. hash layers)
  // Each expert takes every token whose score reaches its cutoff (an EMA of the score of the k-th
  // token it took under expert choice in training): a decision per token, so causal. Same plan
  // layout and gates as expert choice; docs/causal.md.
  kExpertThreshold,
};

RouterKind parse_router_kind(const std::string& name);  // "expert_choice", "top2", ...
std::string router_name(RouterKind kind);
bool router_has_weights(RouterKind kind);  // dense and hash have no router
bool router_is_token_choice(RouterKind kind);
// Expert choice and threshold routing: the layer reports each expert's k-th selected score and
// the model keeps a cutoff per expert (docs/causal.md).
bool router_has_cutoffs(RouterKind kind);
// The router to evaluate a checkpoint trained with `trained` when `name` is asked for: the same
// one, or expert_choice and expert_threshold in place of each other (both keep cutoffs). Throws
// "<context>: a checkpoint trained with X cannot be evaluated with Y (...)" otherwise.
RouterKind evaluation_router(RouterKind trained, const std::string& name,
                             const std::string& context);

// The entropy-regularised assignment solved for capped expert choice:
// max <S^T, A> + lambda·H(A), rows sum to k, columns sum to <= max_experts_per_token, 0 <= A <= 1.
struct CappedSolverConfig {
  int max_experts_per_token = 2;  // b
  float lambda = 1e-3f;           // final entropy weight (the paper's value)
  int max_iterations = 100;       // Dykstra sweeps, including the epsilon-scaling phase
  float tolerance = 1e-3f;        // stop when the relative constraint violation is below this
  bool epsilon_scaling = true;    // start lambda at 1 and shrink it geometrically (warm start)
};

struct MoeConfig {
  int d_model = 256;
  int d_ff = 1024;
  int n_experts = 8;
  RouterKind router = RouterKind::kExpertChoice;
  // Average experts per token (expert choice) or capacity multiplier (token choice).
  float capacity_factor_train = 2.f;
  float capacity_factor_eval = 2.f;
  int group_size = 0;  // tokens per routing group; 0 = the whole batch is one group
  // Expert parallelism only: route over all ranks' tokens as one batch (scores all-gathered;
  // group_size then counts global tokens) instead of each rank routing its own tokens.
  bool global_routing = false;
  CappedSolverConfig capped;
  int token_choice_k = 0;           // choices per token for token choice; 0 = from the router
  bool renormalize_gates = true;    // top-k gates divided by their sum (GShard top-2)
  bool batch_prioritized = false;   // token choice fills slots by top-1 probability, not position
  float load_balance_weight = 0.f;  // e^2 · mean(f · P), Switch/GShard
  float z_loss_weight = 0.f;        // mean(logsumexp(logits)^2)
  float jitter = 0.f;  // router input multiplied by U(1 - jitter, 1 + jitter) in training
  // Threshold routing (docs/causal.md): each step, cutoff += rate · (k-th selected score − cutoff);
  // a threshold-routed model trains with expert choice for its first warm-up steps (>= 1, so the
  // cutoffs exist before they are used).
  float threshold_ema_rate = 0.05f;
  int threshold_warmup_steps = 100;
  // The experts' GEMMs (forward and backward) in bf16 operands with fp32 accumulation; the router,
  // its softmax and every routing decision stay fp32. A model's layers take it from
  // ModelConfig::precision.
  Precision precision = Precision::kFp32;

  int expert_count() const;       // 1 for dense
  int choices_per_token() const;  // token choice only
  void validate() const;          // throws ecmoe::Error naming the bad field
};

// The usual settings of each router: EC c = 2 with no auxiliary loss; Switch/GShard with
// capacity factor 1.25 in training and 2.0 in evaluation and load-balancing weight 0.01.
MoeConfig default_moe_config(RouterKind kind);

}  // namespace ecmoe
