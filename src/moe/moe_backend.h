// The seam between the MoE layer and the device it runs on. MoeLayer (moe/moe_layer.h) runs on
// the CPU by itself; given a backend (the CUDA one: cuda/moe_layer.h), it hands forward and
// backward to it, with the same config, the same parameter layout (MoeWeights/MoeGrads, then
// pointers into that device's memory) and a plan with RoutingPlan's meaning. Every op a backend
// runs is tested against the CPU op of the same name (tests/cuda/).
#pragma once
#include "moe/moe_config.h"
#include "moe/routing_plan.h"
#include "nn/grad_write.h"

namespace ecmoe {

struct MoeWeights;
struct MoeGrads;
struct MoeInput;
struct MoeOutput;
class PhaseTimes;

class MoeBackend {
 public:
  virtual ~MoeBackend() = default;
  virtual const char* device() const = 0;
  // As MoeLayer::forward_async: x [n, d] -> y [n, d] (overwritten, plus in.residual where
  // given); x, y, the residual and the weights are in the backend's memory; MoeInput::token_ids and
  // cutoffs stay on the host. The output's auxiliary losses and statistics may still be on their
  // way from the device: finish() completes them.
  virtual MoeOutput forward(const MoeConfig& config, const MoeWeights& w, const MoeInput& in,
                            float* y) = 0;
  // Completes the output the last forward returned, waiting for the device as far as it needs
  // (once per forward). A backend whose forward returns complete outputs leaves it as it is.
  virtual void finish(MoeOutput& out) { (void)out; }
  // As MoeLayer::backward: dx (+=, or written: dx_write), grads (+=), all in the backend's memory.
  virtual void backward(const MoeConfig& config, const MoeWeights& w, MoeGrads& g, const float* dy,
                        float* dx, float aux_scale, nn::GradWrite dx_write) = 0;
  // The last forward's plan, copied to the host.
  virtual const RoutingPlan& host_plan() = 0;
  // Routing statistics cost a copy of the plan and scores to the host each forward; a benchmark
  // that does not report them turns them off (MoeOutput::stats then stays empty).
  virtual void set_collect_stats(bool collect) = 0;
  // Each phase's time (the device synchronised at each phase's end), as MoeLayer's.
  virtual void set_phase_times(PhaseTimes* times) = 0;
};

}  // namespace ecmoe
