// A MoeBackend for the model tests: a plain CPU MoeLayer behind the seam (made at the first
// forward, with the config the layer passes), which counts its calls by name in a map (a
// RecordingBackend's, so MoE and dense ops are counted together) and, with `order`, logs them in
// sequence ("forward", "finish"). With `defer`, forward returns an empty output and keeps the
// real one until finish(), as a device does whose results are still on their way: a caller that
// reads an output before finishing it reads zeros.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "moe/moe_backend.h"
#include "moe/moe_layer.h"

namespace ecmoe::testing {

class HostMoeBackend final : public MoeBackend {
 public:
  explicit HostMoeBackend(std::map<std::string, int>& calls, bool defer = false,
                          std::vector<std::string>* order = nullptr)
      : calls_(calls), defer_(defer), order_(order) {}
  const char* device() const override { return "host"; }
  MoeOutput forward(const MoeConfig& config, const MoeWeights& w, const MoeInput& in,
                    float* y) override {
    note("moe forward");
    if (!inner_) inner_ = std::make_unique<MoeLayer>(config);
    MoeOutput out = inner_->forward(w, in, y);
    if (!defer_) return out;
    kept_ = std::move(out);
    return {};
  }
  void finish(MoeOutput& out) override {
    note("moe finish");
    if (defer_) out = std::move(kept_);
  }
  void backward(const MoeConfig&, const MoeWeights& w, MoeGrads& g, const float* dy, float* dx,
                float aux_scale, nn::GradWrite dx_write) override {
    note("moe backward");
    inner_->backward(w, g, dy, dx, aux_scale, dx_write);
  }
  const RoutingPlan& host_plan() override { return inner_->plan(); }
  void set_collect_stats(bool collect) override { calls_[collect ? "stats on" : "stats off"]++; }
  void set_phase_times(PhaseTimes*) override {}

 private:
  void note(const std::string& call) {
    ++calls_[call];
    if (order_) order_->push_back(call);
  }
  std::map<std::string, int>& calls_;
  bool defer_ = false;
  std::vector<std::string>* order_ = nullptr;
  std::unique_ptr<MoeLayer> inner_;
  MoeOutput kept_;
};

}  // namespace ecmoe::testing
