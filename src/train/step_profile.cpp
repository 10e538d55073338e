#include "train/step_profile.h"

#include <algorithm>
#include <initializer_list>
#include <string_view>

#include "core/error.h"

namespace ecmoe {

std::string op_class(const std::string& name) {
  const auto is = [&](std::initializer_list<std::string_view> names) {
    return std::find(names.begin(), names.end(), name) != names.end();
  };
  if (name.starts_with("gemm ") || is({"linear", "tied_output"})) return "GEMMs";
  if (name == "attention") return "attention";
  if (is({"router", "routing", "aux losses", "router backward", "dispatch", "combine",
          "dispatch adjoint", "combine adjoint"}))
    return "MoE routing, dispatch, combine";
  if (is({"layernorm", "embedding", "add", "fill", "gather_rows", "gelu", "gelu'",
          "weights to bf16"}))
    return "elementwise";
  if (name == "cross_entropy") return "loss";
  if (is({"upload", "download", "copy"})) return "copies";
  if (name == "optimizer") return "optimizer";
  return "unclassified";
}

StepProfile summarize_profile(const PhaseTimes& times, double seconds, int steps) {
  ECMOE_CHECK(steps > 0, "step profile: no steps");
  StepProfile p;
  p.steps = steps;
  p.step_seconds = seconds / steps;
  for (const char* c : kOpClasses) p.classes.emplace_back(c, 0.0);
  double timed = 0;
  for (const auto& [name, s] : times.entries()) {
    p.ops.emplace_back(name, s / steps);
    const std::string c = op_class(name);
    for (auto& [cls, sum] : p.classes)
      if (cls == c) sum += s / steps;
    timed += s / steps;
  }
  p.classes.back().second = std::max(0.0, p.step_seconds - timed);
  return p;
}

}  // namespace ecmoe
