// The step profile of `ecmoe bench train`: the timed backend changes no result and names every op
// it runs, the MoE layers add their phases, every name has a class, and the classes add up to
// the step.
#include <gtest/gtest.h>

#include <algorithm>
#include <iterator>
#include <set>
#include <string>

#include "core/error.h"
#include "core/phase_times.h"
#include "model/model_test_util.h"
#include "model/transformer.h"
#include "nn/timed_backend.h"
#include "train/step_profile.h"

using namespace ecmoe;

TEST(StepProfile, TheTimedBackendChangesNothingAndNamesEveryOp) {
  for (const ModelKind kind : {ModelKind::kEncoder, ModelKind::kDecoder}) {
    const ModelConfig c = ecmoe::testing::tiny_config(kind, RouterKind::kExpertChoice);
    Transformer plain(c), timed_model(c);
    FlatBuffer params(plain.table()), want(plain.table()), got(plain.table());
    plain.init_params(params, 3);
    const Batch batch = ecmoe::testing::random_batch(c, 3, c.seq_len, 9);
    PhaseTimes times;
    nn::TimedBackend timed(nn::cpu_backend(), times);
    timed_model.set_nn_backend(timed);
    timed_model.set_moe_phase_times(&times);
    const double a = plain.forward(params, batch, true, 5).loss;
    plain.backward(params, want);
    const double b = timed_model.forward(params, batch, true, 5).loss;
    timed_model.backward(params, got);
    EXPECT_EQ(a, b);
    EXPECT_TRUE(std::equal(want.data(), want.data() + want.size(), got.data()));
    std::set<std::string> names;
    for (const auto& [name, seconds] : times.entries()) {
      names.insert(name);
      EXPECT_GE(seconds, 0.0);
      EXPECT_NE(op_class(name), "unclassified") << name;
    }
    for (const char* op :
         {"embedding", "layernorm", "linear", "attention", "tied_output", "cross_entropy", "upload",
          "router", "routing", "dispatch", "combine", "router backward"})
      EXPECT_TRUE(names.count(op)) << op << " was not timed";
    timed_model.set_moe_phase_times(nullptr);
    timed_model.set_nn_backend(nn::cpu_backend());
  }
}

TEST(StepProfile, ClassesAddUpToTheStep) {
  EXPECT_EQ(op_class("linear"), "GEMMs");
  EXPECT_EQ(op_class("gemm x_in*W1 + gelu"), "GEMMs");
  EXPECT_EQ(op_class("gelu'"), "elementwise");
  EXPECT_EQ(op_class("dispatch adjoint"), "MoE routing, dispatch, combine");
  EXPECT_EQ(op_class("download"), "copies");
  EXPECT_EQ(op_class("teleport"), "unclassified");
  PhaseTimes times;
  times.add("linear", 0.6);
  times.add("gemm hidden*W2", 0.2);
  times.add("attention", 0.4);
  times.add("optimizer", 0.2);
  const StepProfile p = summarize_profile(times, 2.0, 2);  // 1 s a step, 0.7 s of it timed
  EXPECT_EQ(p.steps, 2);
  EXPECT_DOUBLE_EQ(p.step_seconds, 1.0);
  ASSERT_EQ(p.classes.size(), std::size(kOpClasses));
  double sum = 0;
  for (const auto& [name, seconds] : p.classes) sum += seconds;
  EXPECT_DOUBLE_EQ(sum, 1.0);
  EXPECT_DOUBLE_EQ(p.classes[0].second, 0.4);  // GEMMs: (0.6 + 0.2) / 2
  EXPECT_EQ(p.classes.back().first, "host and other");
  EXPECT_DOUBLE_EQ(p.classes.back().second, 0.3);
  EXPECT_EQ(p.ops.size(), 4u);
}
