// The MoE layer: router (logits -> softmax scores), routing plan, experts, combine; forward and
// backward side by side. x [n, d_model] -> y [n, d_model]. Parameters (names under a prefix):
//   router.weight  [d_model, e]      (routers with weights only)
//   experts.w1     [e, d_model, d_ff]
//   experts.w2     [e, d_ff, d_model]
// The layer object keeps the activations of its last forward for the backward pass; auxiliary
// losses and routing statistics are returned as values.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/aligned.h"
#include "core/phase_times.h"
#include "core/tensor_table.h"
#include "dist/comm.h"
#include "moe/aux_losses.h"
#include "moe/expert_ffn.h"
#include "moe/moe_backend.h"
#include "moe/moe_config.h"
#include "moe/routers.h"
#include "nn/grad_write.h"

namespace ecmoe {

struct MoeWeights {
  const float* router = nullptr;  // [d, e]
  const float* w1 = nullptr;      // [e, d, f]
  const float* w2 = nullptr;      // [e, f, d]
};

struct MoeGrads {
  float* router = nullptr;
  float* w1 = nullptr;
  float* w2 = nullptr;
};

// Which experts this process stores and runs under expert parallelism: rank r of P owns experts
// [r·e/P, (r+1)·e/P). Dense layers are never split ({0, 1}).
struct ExpertShard {
  int rank = 0;
  int ranks = 1;
  bool split() const { return ranks > 1; }
};
// The shard of `comm`'s rank ({0, 1} without a parallel communicator or for a dense layer).
// Throws unless n_experts is divisible by the number of ranks.
ExpertShard expert_shard(const MoeConfig& config, const dist::Comm* comm);

// With a split shard, experts.w1/w2 are declared as the owned rows [e/P, d, f] and [e/P, f, d]
// of the whole tensors (TensorTable::add_shard); the router is whole on every process.
void declare_moe_params(TensorTable& table, const std::string& prefix, const MoeConfig& config,
                        ExpertShard shard = {});
MoeWeights moe_weights(const FlatBuffer& params, const std::string& prefix,
                       const MoeConfig& config);
MoeGrads moe_grads(FlatBuffer& grads, const std::string& prefix, const MoeConfig& config);
// Normal init: W1 with std 1/sqrt(d), W2 with std 1/sqrt(f), router with std init_router_std.
void init_moe_params(FlatBuffer& params, const std::string& prefix, const MoeConfig& config,
                     uint64_t seed, float router_std = 0.02f);

struct MoeInput {
  const float* x = nullptr;            // [n, d]
  const int32_t* token_ids = nullptr;  // [n], hash routing
  int n_tokens = 0;
  bool training = true;            // picks the capacity factor and enables jitter
  uint64_t seed = 0;               // jitter noise stream for this call
  const float* cutoffs = nullptr;  // [e] expert_threshold routing: each expert's score cutoff
  // Position of this call's first token in the whole batch (rank r's offset under data
  // parallelism): jitter noise is drawn by that position, so P ranks see the noise one process
  // sees over the whole batch.
  int64_t first_token = 0;
  // Routes this call with another router over the same weights (threshold training's first steps
  // route by expert choice, which sets the cutoffs); nullopt: the layer's own router.
  std::optional<RouterKind> router = std::nullopt;
  // [n, d] or nullptr: added to the layer's output, y = residual + FFN(x) (a block's residual
  // connection), by the combine after its sum: the bits of adding it afterwards, without that
  // pass over y. Its gradient is dy itself: backward does not change.
  const float* residual = nullptr;
};

// The config a call routes by: `config`, or with MoeInput::router's router when one is given
// (throws unless both routers have router weights, or neither).
MoeConfig routing_config(const MoeConfig& config, const MoeInput& in);

struct MoeOutput {
  AuxLosses aux;  // unweighted values and their weighted total (part of the loss)
  RoutingStats stats;
};

class MoeLayer {
 public:
  explicit MoeLayer(const MoeConfig& config);
  const MoeConfig& config() const { return config_; }

  // y [n, d] (overwritten; plus MoeInput::residual where given)
  MoeOutput forward(const MoeWeights& w, const MoeInput& in, float* y);
  // The same without waiting for a device: the output's auxiliary losses and statistics are
  // complete only after finish(out), called before the layer's next forward (an output never
  // finished is dropped). A model forwards all its layers and then finishes them: the host
  // waits for the device once, not per layer. On the CPU the output is complete at once and
  // finish leaves it as it is.
  MoeOutput forward_async(const MoeWeights& w, const MoeInput& in, float* y);
  void finish(MoeOutput& out);
  // The same with a plan given instead of routed (only tests call it); the scores are still
  // computed, so gates defined by scores get their gradient.
  MoeOutput forward_with_plan(const MoeWeights& w, const MoeInput& in, RoutingPlan plan, float* y);
  // dy [n, d] -> dx [n, d] (+=; kOverwrite: written, nn/grad_write.h), grads (+=); the gradient
  // of aux_scale times the weighted auxiliary losses is included (1: they are part of the loss as
  // the forward returned them).
  void backward(const MoeWeights& w, MoeGrads& g, const float* dy, float* dx, float aux_scale = 1.f,
                nn::GradWrite dx_write = nn::GradWrite::kAdd);

  // Expert parallelism (docs/architecture.md): with a communicator of P > 1 ranks, this rank
  // routes its own tokens, sends each slot's row to the rank that owns the slot's expert (rank r
  // owns experts [r·e/P, (r+1)·e/P)), runs its own experts on what it receives and combines the
  // returned rows; backward mirrors it. MoeWeights::w1/w2 and MoeGrads::w1/w2 then hold only the
  // owned experts, [e/P, d, f] and [e/P, f, d] (declare_moe_params with expert_shard). e must be
  // divisible by P. Dense layers stay replicated. The communicator must outlive the layer;
  // nullptr (the default) runs everything locally.
  void set_comm(const dist::Comm* comm);
  bool expert_parallel() const { return comm_ != nullptr; }

  // Runs the layer on another device (moe/moe_backend.h; cuda::make_moe_backend()): forward and
  // backward then take that device's pointers. Not with expert parallelism. nullptr: the CPU.
  void set_backend(std::unique_ptr<MoeBackend> backend);
  const char* device() const { return backend_ ? backend_->device() : "cpu"; }
  MoeBackend* backend() { return backend_.get(); }

  // The last forward's plan (on a backend: copied to the host).
  const RoutingPlan& plan() const { return backend_ ? backend_->host_plan() : plan_; }
  // Optional (benchmarks): each phase's wall time, forward and backward, is added to *times
  // (router, routing, the experts' phases, aux losses, router backward); nullptr: none.
  void set_phase_times(PhaseTimes* times);
  const FloatVec& scores() const { return probs_; }  // [n, e], CPU only

 private:
  void compute_scores(const MoeWeights& w, const MoeInput& in);
  AuxLosses run_experts(const MoeWeights& w, const MoeInput& in, RoutingPlan plan, float* y);
  RouteResult route_global(const MoeConfig& routing, const RouteRequest& local);
  void experts_forward_parallel(const MoeWeights& w, const float* x, float* y,
                                const float* residual);
  void experts_backward_parallel(const MoeWeights& w, MoeGrads& g, const float* dy, float* dx,
                                 float* dgate);
  MoeConfig config_;
  const dist::Comm* comm_ = nullptr;
  // Expert parallelism, saved by forward: rows sent to / received from each rank, the plan over
  // the received rows (local expert j: rank 0's rows, then rank 1's, ...) and this rank's slot
  // outputs returned by their owners [S, d], before the gate.
  std::vector<int> send_rows_, recv_rows_;
  RoutingPlan local_plan_;
  FloatVec slot_out_;
  // Saved by forward for backward.
  const float* x_ = nullptr;
  int n_ = 0;
  FloatVec router_input_;  // [n, d] x times the jitter noise (training with jitter only)
  FloatVec noise_;         // [n, d]
  FloatVec logits_;        // [n, e]
  FloatVec probs_;         // [n, e]
  RoutingPlan plan_;
  ExpertActivations act_;
  ExpertScratch scratch_;
  bool backward_ready_ = false;
  PhaseTimes* times_ = nullptr;
  std::unique_ptr<MoeBackend> backend_;
};

}  // namespace ecmoe
