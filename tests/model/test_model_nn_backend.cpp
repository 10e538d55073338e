// The model's dense-op seam (nn/backend.h): a backend that records each op and runs the CPU's
// sees every op the model needs and holds its activations (nn/buffer.h), encoder and decoder,
// masked and fully counted LM heads, task heads through the hidden states, and the model through
// it computes bitwise what it computes without it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "host_moe_backend.h"
#include "model_test_util.h"
#include "nn/backend.h"
#include "recording_backend.h"

namespace ecmoe {
namespace {

using testing::HostMoeBackend;
using testing::random_batch;
using testing::RecordingBackend;
using testing::tiny_config;

struct Step {
  double loss = 0;
  std::vector<float> grads;
};

Step train_step(Transformer& model, const FlatBuffer& params, const Batch& batch) {
  FlatBuffer grads(model.table());
  const ForwardResult f = model.forward(params, batch, true, 17);
  model.backward(params, grads);
  return {f.loss, std::vector<float>(grads.data(), grads.data() + grads.size())};
}

TEST(ModelNnBackend, EveryDenseOpGoesThroughTheBackendWithTheSameResults) {
  RecordingBackend recording;
  for (const ModelKind kind : {ModelKind::kEncoder, ModelKind::kDecoder}) {
    for (const Precision precision : {Precision::kFp32, Precision::kBf16}) {
      ModelConfig c = tiny_config(kind, RouterKind::kExpertChoice);
      c.precision = precision;
      Transformer plain(c), seamed(c);
      seamed.set_nn_backend(recording);
      EXPECT_STREQ(seamed.nn_backend().name(), "recording");
      EXPECT_STREQ(plain.nn_backend().name(), "cpu");
      FlatBuffer params(plain.table());
      plain.init_params(params, 3);
      Batch batch = random_batch(c, 2, 6, 5);
      if (kind == ModelKind::kDecoder)  // every row counted: the LM head without its gather
        for (std::size_t i = 0; i < batch.targets.size(); ++i) batch.targets[i] = 5 + int(i % 7);
      const Step want = train_step(plain, params, batch);
      const Step got = train_step(seamed, params, batch);
      EXPECT_EQ(got.loss, want.loss);
      EXPECT_TRUE(got.grads == want.grads) << "gradients differ through the seam";
      // Per-position log-probabilities (leakage) read the backend's logits.
      plain.forward(params, batch, false, 1);
      seamed.forward(params, batch, false, 1);
      EXPECT_EQ(seamed.target_log_probs(), plain.target_log_probs());
    }
  }
  {  // Parameters and gradients given as pointers into the backend's memory.
    const ModelConfig c = tiny_config(ModelKind::kDecoder, RouterKind::kTop1);
    Transformer plain(c), seamed(c);
    seamed.set_nn_backend(recording);
    seamed.set_moe_backends({});  // no MoE backend: the layers stay on the CPU
    FlatBuffer params(plain.table()), want(plain.table()), got(plain.table());
    plain.init_params(params, 8);
    const Batch batch = random_batch(c, 2, 5, 9);
    const Step step = train_step(plain, params, batch);
    const ForwardResult f = seamed.forward_on_backend(params.data(), nullptr, batch, true, 17);
    seamed.backward_on_backend(params.data(), got.data());
    EXPECT_EQ(f.loss, step.loss);
    EXPECT_TRUE(std::equal(step.grads.begin(), step.grads.end(), got.data()));
    EXPECT_THROW(seamed.backward_on_backend(params.data(), got.data()), Error);  // once a forward
  }
  {  // A task head's way in: the hidden states' gradient copied into the backend.
    const ModelConfig c = tiny_config(ModelKind::kEncoder, RouterKind::kTop2);
    Transformer plain(c), seamed(c);
    seamed.set_nn_backend(recording);
    FlatBuffer params(plain.table()), want(plain.table()), got(plain.table());
    plain.init_params(params, 4);
    const Batch batch = random_batch(c, 2, 5, 6);
    const std::vector<float> d_hidden(std::size_t(batch.token_count() * c.d_model), 0.25f);
    plain.forward_hidden(params, batch, true, 2);
    plain.backward_from_hidden(params, want, d_hidden.data());
    seamed.forward_hidden(params, batch, true, 2);
    seamed.backward_from_hidden(params, got, d_hidden.data());
    EXPECT_TRUE(std::equal(want.data(), want.data() + want.size(), got.data()));
  }
  for (const char* op : {"allocate",
                         "upload",
                         "copy",
                         "fill",
                         "add_inplace",
                         "gather_rows",
                         "scatter_add_rows",
                         "embedding_forward",
                         "embedding_backward",
                         "layernorm_forward",
                         "layernorm_backward",
                         "linear_forward",
                         "linear_residual_forward",
                         "linear_backward",
                         "attention_front_forward",
                         "attention_forward",
                         "attention_backward",
                         "attention_forward causal",
                         "attention_backward causal",
                         "tied_output_forward",
                         "tied_output_backward",
                         "cross_entropy_forward",
                         "cross_entropy_backward"})
    EXPECT_GT(recording.calls[op], 0) << op << " never reached the backend";
  // 4 steps and 4 evaluations (encoder, decoder; fp32, bf16), the pointer step, the task head's
  // step, of 3 attention blocks with 2 linear layers each.
  EXPECT_EQ(recording.calls["linear_forward"], 10 * 3 * 2);
  // Each block's front (LayerNorm, the qkv projection and the attention) and its output
  // projection with the residual: one call each.
  EXPECT_EQ(recording.calls["attention_front_forward"], 10 * 3);
  EXPECT_EQ(recording.calls["linear_residual_forward"], 10 * 3);
}

// Setting another backend gives the activations back to the old one at once: a backend used for
// a while (a profile, an evaluation on a device) may go before the model does.
TEST(ModelNnBackend, ChangingTheBackendReleasesTheActivationsOnTheOldOne) {
  const ModelConfig c = tiny_config(ModelKind::kEncoder, RouterKind::kExpertChoice);
  Transformer model(c);
  FlatBuffer params(model.table());
  model.init_params(params, 5);
  const Batch batch = random_batch(c, 2, 6, 5);
  const Step want = train_step(model, params, batch);
  {
    RecordingBackend temporary;
    model.set_nn_backend(temporary);
    EXPECT_EQ(train_step(model, params, batch).loss, want.loss);
    EXPECT_GT(temporary.calls["allocate"], 0);
    model.set_nn_backend(nn::cpu_backend());
    EXPECT_EQ(temporary.released, temporary.calls["allocate"]);
  }
  const Step got = train_step(model, params, batch);  // on the CPU again, nothing left behind
  EXPECT_EQ(got.loss, want.loss);
  EXPECT_TRUE(got.grads == want.grads);
}

// MoE layers whose outputs arrive late (a device's: MoeLayer::forward_async, then finish): the
// model forwards every layer before it finishes any, finishes each once, and its loss, auxiliary
// losses, routing statistics and gradients are the plain model's, bit for bit.
TEST(ModelNnBackend, MoeOutputsAreFinishedOnceAfterEveryLayerForwarded) {
  for (const RouterKind router : {RouterKind::kExpertChoice, RouterKind::kTop2}) {
    ModelConfig c = tiny_config(ModelKind::kEncoder, router);
    c.moe_every = 1;  // every layer a MoE layer
    c.moe.load_balance_weight = 0.01f;
    Transformer plain(c), deferred(c);
    std::map<std::string, int> calls;
    std::vector<std::string> order;
    deferred.set_moe_backends(
        [&] { return std::make_unique<HostMoeBackend>(calls, /*defer=*/true, &order); });
    FlatBuffer params(plain.table());
    plain.init_params(params, 6);
    const Batch batch = random_batch(c, 2, 6, 4);
    const ForwardResult want = plain.forward(params, batch, true, 3);
    const ForwardResult got = deferred.forward(params, batch, true, 3);
    const int L = c.n_layers;
    ASSERT_EQ(int(order.size()), 2 * L);
    for (int l = 0; l < L; ++l) {
      EXPECT_EQ(order[l], "moe forward");
      EXPECT_EQ(order[L + l], "moe finish");
    }
    EXPECT_EQ(got.loss, want.loss);
    EXPECT_NE(got.aux.weighted_total, 0.f);
    EXPECT_EQ(got.aux.weighted_total, want.aux.weighted_total);
    ASSERT_EQ(got.layer_stats.size(), want.layer_stats.size());
    for (int l = 0; l < L; ++l) {
      EXPECT_EQ(got.layer_stats[l].tokens, want.layer_stats[l].tokens);
      EXPECT_EQ(got.layer_stats[l].tokens_per_expert, want.layer_stats[l].tokens_per_expert);
      EXPECT_EQ(got.layer_stats[l].router_entropy_sum, want.layer_stats[l].router_entropy_sum);
    }
    FlatBuffer want_grads(plain.table()), got_grads(plain.table());
    plain.backward(params, want_grads);
    deferred.backward(params, got_grads);
    EXPECT_TRUE(
        std::equal(want_grads.data(), want_grads.data() + want_grads.size(), got_grads.data()));
  }
}

}  // namespace
}  // namespace ecmoe
