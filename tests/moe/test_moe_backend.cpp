// The backend seam (moe/moe_backend.h) on the CPU: a MoeLayer given a backend hands it every
// forward and backward with its own config, the weights, the input and the output pointers, and
// returns what the backend returns; plan() is the backend's host plan; phase timing reaches the
// backend; backward before a forward and expert parallelism are refused. The backend here runs
// a second, plain MoeLayer, so the results must equal that layer's bit for bit.
#include <gtest/gtest.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/phase_times.h"
#include "dist/comm.h"
#include "moe_test_util.h"

using namespace ecmoe;
using namespace ecmoe::testing;

namespace {

struct Calls {
  int forward = 0, backward = 0;
  float aux_scale = 0.f;
  PhaseTimes* times = nullptr;
  bool collect_stats = true;
  std::string router;
};

// Runs an ordinary CPU layer behind the seam and records what reached it.
class RecordingBackend final : public MoeBackend {
 public:
  RecordingBackend(const MoeConfig& config, Calls& calls) : inner_(config), calls_(calls) {}
  const char* device() const override { return "recording"; }
  MoeOutput forward(const MoeConfig& config, const MoeWeights& w, const MoeInput& in,
                    float* y) override {
    ++calls_.forward;
    calls_.router = router_name(config.router);
    return inner_.forward(w, in, y);
  }
  void backward(const MoeConfig&, const MoeWeights& w, MoeGrads& g, const float* dy, float* dx,
                float aux_scale, nn::GradWrite dx_write) override {
    ++calls_.backward;
    calls_.aux_scale = aux_scale;
    inner_.backward(w, g, dy, dx, aux_scale, dx_write);
  }
  const RoutingPlan& host_plan() override { return inner_.plan(); }
  void set_collect_stats(bool collect) override { calls_.collect_stats = collect; }
  void set_phase_times(PhaseTimes* times) override { calls_.times = times; }

 private:
  MoeLayer inner_;
  Calls& calls_;
};

struct Pass {
  std::vector<float> y, dx, grads;
  MoeOutput out;
};

Pass forward_backward(MoeLayer& layer, LayerCase& c) {
  Pass p;
  p.y.resize(c.x.size());
  p.dx.assign(c.x.size(), 0.f);
  FlatBuffer grads(c.table);
  MoeGrads g = moe_grads(grads, "", c.config);
  p.out = layer.forward(c.weights(), c.input(), p.y.data());
  layer.backward(c.weights(), g, c.x.data(), p.dx.data(), 0.5f);  // dy = x: any fixed array
  p.grads.assign(grads.data(), grads.data() + grads.size());
  return p;
}

}  // namespace

TEST(MoeBackend, TheLayerHandsEveryCallToItsBackend) {
  for (RouterKind kind : {RouterKind::kExpertChoice, RouterKind::kTop2}) {
    const MoeConfig cfg = small_config(kind, 8, 12, 4);
    LayerCase c(cfg, 21, 5);
    MoeLayer plain(cfg);
    const Pass expected = forward_backward(plain, c);

    Calls calls;
    MoeLayer layer(cfg);
    EXPECT_STREQ(layer.device(), "cpu");
    layer.set_backend(std::make_unique<RecordingBackend>(cfg, calls));
    EXPECT_STREQ(layer.device(), "recording");
    PhaseTimes times;
    layer.set_phase_times(&times);
    EXPECT_EQ(calls.times, &times);
    const Pass got = forward_backward(layer, c);
    EXPECT_EQ(calls.forward, 1);
    EXPECT_EQ(calls.backward, 1);
    EXPECT_EQ(calls.aux_scale, 0.5f);
    EXPECT_EQ(calls.router, router_name(kind));
    EXPECT_EQ(got.y, expected.y);
    EXPECT_EQ(got.dx, expected.dx);
    EXPECT_EQ(got.grads, expected.grads);
    EXPECT_EQ(got.out.aux.weighted_total, expected.out.aux.weighted_total);
    EXPECT_EQ(got.out.stats.tokens, expected.out.stats.tokens);
    EXPECT_EQ(layer.plan().slot_token, plain.plan().slot_token);  // the backend's host plan
    layer.backend()->set_collect_stats(false);
    EXPECT_FALSE(calls.collect_stats);
  }
}

TEST(MoeBackend, BackwardNeedsAForwardAndExpertParallelismStaysOnTheCpu) {
  const MoeConfig cfg = small_config(RouterKind::kExpertChoice, 8, 12, 4);
  LayerCase c(cfg, 8, 2);
  Calls calls;
  MoeLayer layer(cfg);
  layer.set_backend(std::make_unique<RecordingBackend>(cfg, calls));
  FlatBuffer grads(c.table);
  MoeGrads g = moe_grads(grads, "", cfg);
  std::vector<float> dx(c.x.size());
  EXPECT_THROW(layer.backward(c.weights(), g, c.x.data(), dx.data()), Error);
  EXPECT_EQ(calls.backward, 0);
  // A parallel communicator is refused with a backend set (a single one is no expert
  // parallelism, so it is accepted).
  const dist::Comm single = dist::Comm::single();
  EXPECT_NO_THROW(layer.set_comm(&single));
  layer.set_backend(nullptr);
  EXPECT_STREQ(layer.device(), "cpu");
}
