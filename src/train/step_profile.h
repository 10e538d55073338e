// Where a training step's time goes, by class of op, from the engine's own timers: the dense ops
// timed one by one (nn/timed_backend.h), the MoE layers' phases (Transformer::
// set_moe_phase_times) and the optimizer, over a few profiled steps. Every timed op synchronises
// the device first and last, so a profiled step is slower than a plain one (the host no longer
// runs ahead); the classes say where the device's work is, the remainder ("host and other") what
// the host does between ops: batches, routing statistics, launches.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "core/phase_times.h"

namespace ecmoe {

// The classes, in report order.
inline constexpr const char* kOpClasses[] = {
    "GEMMs",       "attention",    "MoE routing, dispatch, combine",
    "elementwise", "loss",         "copies",
    "optimizer",   "unclassified", "host and other"};

// The class of an op (nn::TimedBackend's names), MoE phase (moe/moe_layer.cpp, expert_ffn.cpp,
// their CUDA twins) or "optimizer"; "unclassified" for a name it does not know (the tests check
// that no op of the model is, so a new op or phase gets a class; a profile never fails on one).
std::string op_class(const std::string& name);

struct StepProfile {
  int steps = 0;
  double step_seconds = 0;                              // mean profiled step
  std::vector<std::pair<std::string, double>> classes;  // seconds per step, kOpClasses' order
  std::vector<std::pair<std::string, double>> ops;      // seconds per step per op or phase
};

// times: every op's and phase's seconds summed over `steps` steps that took `seconds` in all.
StepProfile summarize_profile(const PhaseTimes& times, double seconds, int steps);

}  // namespace ecmoe
